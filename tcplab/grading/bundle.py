"""Gradescope's autograder bundle for an assignment: a zip with ``setup.sh`` (system packages and
tcplab into /autograder/venv) and ``run_autograder`` (grades /autograder/submission into
/autograder/results/results.json), plus tcplab's source and the assignment's tests and
starter (public anyway: a script prediction's given lines are checked against it).  The reference
solution is left out."""
from __future__ import annotations

import zipfile
from pathlib import Path

from ..errors import ConfigError
from .assignment import Assignment

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image (Ubuntu 22.04 by default, as root;
# Debian works the same).  Gradescope's containers refuse network namespaces, so tcplab grades
# inside a small VM there: QEMU, busybox and a stock kernel with its modules are installed too.
set -euo pipefail
ROOT=${AUTOGRADER_ROOT:-/autograder}
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Ubuntu 24.04 renamed libpcap0.8 to libpcap0.8t64: take whichever name apt has.
pcap=libpcap0.8
# (grep reads all of it: with -q it would stop early, and pipefail would take apt-cache's SIGPIPE for a no)
apt-cache policy libpcap0.8 | grep 'Candidate: [0-9]' >/dev/null || pcap=libpcap0.8t64
if grep -qi '^ID=ubuntu' /etc/os-release; then kernel=linux-image-generic; else kernel=linux-image-amd64; fi
apt-get install -y -qq --no-install-recommends python3 python3-venv python3-pip nftables tcpdump iproute2 \\
  bubblewrap util-linux "$pcap" qemu-system-x86 busybox-static kmod "$kernel"
# Ubuntu keeps sch_netem and some nftables modules in linux-modules-extra (not needed to grade;
# installed where it exists so that every lab runs).
if [ "$kernel" = linux-image-generic ]; then
  for v in $(ls /lib/modules); do apt-get install -y -qq --no-install-recommends "linux-modules-extra-$v" || true; done
fi
python3 -m venv "$ROOT/venv"
"$ROOT/venv/bin/pip" install -q "$ROOT/source/tcplab"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission.  It always leaves results.json: the grade (in the VM
# where the container refuses network namespaces), or score 0 with one line saying why not.
set -u
ROOT=${AUTOGRADER_ROOT:-/autograder}
PY=${TCPLAB_PYTHON:-$ROOT/venv/bin/python}
mkdir -p "$ROOT/results"
cd "$ROOT"   # never a folder with a tcplab checkout in it: the installed tcplab is what runs
"$PY" -m tcplab grade "$ROOT/source/assignment" "$ROOT/submission" --out "$ROOT/work" \\
  --results-json "$ROOT/results/results.json" --no-progress -j 1
status=$?
if [ ! -s "$ROOT/results/results.json" ]; then
  printf '{"score": 0, "output": "tcplab could not grade this submission (exit status %s): see the autograder log", "tests": []}\\n' \\
    "$status" > "$ROOT/results/results.json"
fi
exit 0
"""

SOURCE_FILES = ("pyproject.toml", "README.md")
SOURCE_DIRS = ("tcplab", "fixtures")


def tcplab_checkout() -> Path:
    root = Path(__file__).resolve().parents[2]
    if not all((root / f).is_file() for f in SOURCE_FILES) or not (root / "fixtures").is_dir():
        raise ConfigError(f"{root} is not a tcplab checkout (no pyproject.toml and fixtures/): build the bundle "
                          "from a checkout, e.g. git clone ... && sudo ci/setup && .venv/bin/tcplab bundle ...")
    return root


def _add_tree(z: zipfile.ZipFile, src: Path, dest: str) -> None:
    for f in sorted(src.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
            z.write(f, f"{dest}/{f.relative_to(src).as_posix()}")


def build_bundle(assignment: Assignment, out: Path) -> list[str]:
    """Write the zip; returns its file names."""
    root = tcplab_checkout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, text)
        for f in SOURCE_FILES:
            z.write(root / f, f"tcplab/{f}")
        for d in SOURCE_DIRS:
            _add_tree(z, root / d, f"tcplab/{d}")
        z.write(assignment.path / "assignment.toml", "assignment/assignment.toml")
        _add_tree(z, assignment.tests, "assignment/tests")
        if (assignment.path / "starter").is_dir():
            _add_tree(z, assignment.path / "starter", "assignment/starter")
        return z.namelist()
