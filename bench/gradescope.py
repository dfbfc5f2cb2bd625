#!/usr/bin/env python3
"""Benchmark: each assignment graded the way Gradescope grades it, in its resource tiers.

For each assignment: `tcplab bundle` builds the autograder zip, which is unpacked as Gradescope
does (/autograder/source, the submission in /autograder/submission); then `run_autograder` runs
as root under Docker's capability set and seccomp profile (tests/integration/dockerlike.py: no
namespaces at all, so tcplab boots its VM) inside a cgroup with the tier's CPU quota and memory
limit (tests/integration/tier.py).  Reported per run: the score, the wall time of the whole
`run_autograder` (VM boot included) and the peak memory of everything in the cgroup (QEMU
included), and the ratio of the wall time to the tier's timeout (Gradescope's default: 10 min).

Usage: sudo .venv/bin/python bench/gradescope.py [--tiers default,1cpu] [--assignments 1-client,...]
                                                [--submissions reference,starter]
Needs the VM (sudo ci/setup --vm).  Prints one line per run, then a table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tcplab.cli import exit_on_sigterm

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests" / "integration"
TIERS = {"default": (0.5, 768), "1cpu": (1.0, 1536)}     # Gradescope: 0.5 CPU / 768 MB by default
TIMEOUT_S = 600


def run(assignment: Path, submission: str, tier: str, work: Path) -> dict:
    root = work / f"{assignment.name}-{submission}-{tier}"
    zpath = work / f"{assignment.name}.zip"
    if not zpath.exists():
        subprocess.run([sys.executable, "-m", "tcplab", "bundle", str(assignment), "--out", str(zpath)], check=True,
                       capture_output=True)
    with zipfile.ZipFile(zpath) as z:
        z.extractall(root / "source")
    for f in ("run_autograder", "setup.sh"):
        (root / "source" / f).chmod(0o755)
    shutil.copytree(assignment / submission, root / "submission")
    cpus, mem = TIERS[tier]
    report = root / "tier.json"
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "TCPLAB_PYTHON": sys.executable,
           "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, str(TESTS / "tier.py"), "--cpus", str(cpus), "--memory-mb", str(mem),
                        "--report", str(report), "--", sys.executable, str(TESTS / "dockerlike.py"),
                        "bash", str(root / "source" / "run_autograder")],
                       env=env, capture_output=True, text=True, timeout=3 * TIMEOUT_S)
    (work / f"{root.name}.log").write_text(r.stdout + r.stderr)
    t = json.loads(report.read_text())
    res = json.loads((root / "results" / "results.json").read_text())
    max_score = sum(x.get("max_score", 0) for x in res.get("tests", []))
    return {"assignment": assignment.name, "submission": submission, "tier": tier, "cpus": cpus, "memory_mb": mem,
            "score": res.get("score", 0), "max": max_score, "wall_s": t["wall_s"], "peak_mb": t["peak_mb"],
            "oom_kills": t["oom_kills"], "of_timeout": t["wall_s"] / TIMEOUT_S}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiers", default="default,1cpu")
    ap.add_argument("--assignments", default="1-client,2-handshake,3-predict,4-recovery")
    ap.add_argument("--submissions", default="reference,starter")
    a = ap.parse_args()
    exit_on_sigterm()   # the clean-up below runs on SIGTERM too (cgroups, folders)
    if os.geteuid() != 0:
        sys.exit("run as root (the tiers are cgroups): sudo .venv/bin/python bench/gradescope.py")
    rows = []
    with tempfile.TemporaryDirectory(prefix="tcplab-bench-gradescope-") as tmp:
        for name in a.assignments.split(","):
            for sub in a.submissions.split(","):
                for tier in a.tiers.split(","):
                    row = run(REPO / "assignments" / name, sub, tier, Path(tmp))
                    rows.append(row)
                    print(f"{name} {sub} {tier}: {row['score']:g}/{row['max']:g} in {row['wall_s']:.0f} s, "
                          f"peak {row['peak_mb']} MiB, OOM kills {row['oom_kills']}", flush=True)
    print("\n| assignment | submission | tier | score | wall | peak memory | of the 10-min timeout |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['assignment']} | {r['submission']} | {r['cpus']:g} CPU, {r['memory_mb']} MB | "
              f"{r['score']:g}/{r['max']:g} | {r['wall_s']:.0f} s | {r['peak_mb']} MiB | {r['of_timeout']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
