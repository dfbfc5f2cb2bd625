"""Life cycle: nothing left behind after a SIGKILL, xdist isolation, doctor, no caches.  (Without
root: test_rootless.py.)"""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tcplab.wait import until

REPO = Path(__file__).resolve().parents[2]

KILLED_WORKER = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from tcplab import Topology
topo = Topology()
prog = topo.server.popen(["sleep", "600"])
cap = topo.capture().start()
srv = topo.server.listen(7788)
topo.client.connect(srv.address)
def net_inode(tid):
    return os.stat(f"/proc/{os.getpid()}/task/{tid}/ns/net").st_ino
inodes = [net_inode(ns._thread.native_id) for ns in topo._namespaces]
print(prog.pid, *inodes, flush=True)
sys.stdin.read()
"""


def live_net_namespaces() -> set[int]:
    """Inodes of every network namespace some process or thread is in."""
    out = set()
    for task in Path("/proc").glob("[0-9]*/task/[0-9]*/ns/net"):
        try:
            out.add(task.stat().st_ino)
        except OSError:
            pass
    return out


def test_sigkilled_worker_leaves_nothing_behind(tmp_path):
    """A test process killed with SIGKILL mid-test: its namespaces, veths, capture sockets and the
    programs it started all go away (anonymous namespaces die with their last reference;
    programs get PR_SET_PDEATHSIG)."""
    before_netns = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []
    # Its topology's own folder cannot be removed by a SIGKILLed process: it goes under tmp_path.
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, str(REPO)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    line = proc.stdout.readline().split()
    prog_pid, inodes = int(line[0]), {int(x) for x in line[1:]}
    assert inodes <= live_net_namespaces()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    until(lambda: not Path(f"/proc/{prog_pid}").exists() or
          Path(f"/proc/{prog_pid}/stat").read_text().split()[2] == "Z", 10, "the program to die")
    assert not (inodes & live_net_namespaces())
    after_netns = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []
    assert before_netns == after_netns


def test_labs_run_in_parallel_under_xdist():
    r = subprocess.run([sys.executable, "-m", "pytest", "labs/test_handshake.py", "labs/test_reset.py",
                        "-q", "-n", "4"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-3000:]
    assert " passed" in r.stdout.splitlines()[-1]


def test_doctor_reports_this_machine():
    from tcplab.wire.impair import probe_netem
    r = subprocess.run([sys.executable, "-m", "tcplab", "doctor"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    has_netem = probe_netem()[0]
    assert ("OK      sch_netem" if has_netem else "absent  sch_netem") in r.stdout
    assert f"backend for statistical impairments: {'netem' if has_netem else 'nft'}" in r.stdout
    assert "OK      nftables (kernel, bridge family)" in r.stdout


def test_root_run_leaves_no_caches_in_the_repo(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", ".pytest_cache"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as a user's shell
    r = subprocess.run([sys.executable, "-m", "pytest", "labs/test_reset.py", "tests/unit/test_trace.py", "-q"],
                       cwd=copy, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:]
    left = [str(p.relative_to(copy)) for p in copy.rglob("*") if p.name in ("__pycache__", ".pytest_cache")]
    assert left == []


def test_root_without_cap_sys_admin_runs_the_labs_rootless():
    """A container without --privileged whose seccomp profile allows user namespaces: root there
    cannot create network namespaces, but root in a user namespace of its own can."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    r = subprocess.run(["setpriv", "--bounding-set", "-sys_admin", sys.executable, "-m", "pytest",
                        "labs/test_reset.py", "-n", "2", "-p", "no:cacheprovider"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]
    assert "mode rootless (root inside a user namespace" in r.stdout
    assert "4 passed" in r.stdout


def test_a_run_of_labs_and_tests_leaves_no_temporary_file(tmp_path):
    """Everything tcplab makes outside pytest's basetemp goes under TMPDIR (tempfile), so a run
    with a TMPDIR of its own shows what it left: nothing.  (.ci/run checks the same of /tmp,
    /dev/shm and /run around the whole of CI, where nothing else runs.)"""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    # labs whose timing does not depend on the machine's load (this runs beside other tests)
    r = subprocess.run([sys.executable, "-m", "pytest", "labs/test_handshake.py", "labs/test_reset.py",
                        "tests/integration/test_topology.py", "tests/integration/test_capture.py",
                        "-q", f"--basetemp={tmp_path / 'basetemp'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=280,
                       env={**os.environ, "TMPDIR": str(tmpdir)})
    assert r.returncode == 0, r.stdout[-3000:]
    assert sorted(p.name for p in tmpdir.iterdir()) == []
