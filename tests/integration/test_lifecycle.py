"""Life cycle: nothing left behind after a SIGKILL, xdist isolation, doctor, non-root, no caches."""
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


def test_sigkilled_worker_leaves_nothing_behind():
    """A test process killed with SIGKILL mid-test: its namespaces, veths, capture sockets and the
    programs it started all go away (anonymous namespaces die with their last reference;
    programs get PR_SET_PDEATHSIG)."""
    before_netns = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, str(REPO)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
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
    from tcplab.lab.impair import probe_netem
    r = subprocess.run([sys.executable, "-m", "tcplab", "doctor"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    has_netem = probe_netem()[0]
    assert ("OK      sch_netem" if has_netem else "absent  sch_netem") in r.stdout
    assert f"backend for statistical impairments: {'netem' if has_netem else 'nft'}" in r.stdout
    assert "OK      nftables (kernel, bridge family)" in r.stdout


def _unprivileged():
    for user in ("nobody",):
        try:
            import pwd
            pw = pwd.getpwnam(user)
            return pw.pw_uid, pw.pw_gid
        except KeyError:
            continue
    pytest.skip("no unprivileged user 'nobody' on this machine")


def _python_for(uid, gid):
    """An interpreter of this Python version that user ``uid`` can run."""
    for exe in (sys.executable, "/usr/bin/python3", f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"):
        try:
            r = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                               text=True, preexec_fn=lambda: (os.setgid(gid), os.setuid(uid)))
        except (PermissionError, FileNotFoundError):
            continue
        if r.returncode == 0 and r.stdout.strip() == str(sys.version_info[:2]):
            return exe
    pytest.skip(f"no Python {sys.version_info[0]}.{sys.version_info[1]} that an unprivileged user may run")


def test_labs_as_non_root_stop_with_one_clear_line():
    """Runs `pytest labs/` as user nobody, from a world-readable copy of the checkout and of the
    venv's packages (the checkout itself may live where nobody cannot read, e.g. under /root)."""
    import site
    import tempfile
    uid, gid = _unprivileged()
    exe = _python_for(uid, gid)
    top = Path(tempfile.mkdtemp(prefix="tcplab-nonroot-"))
    try:
        repo, pkgs = top / "repo", top / "site-packages"
        for name in ("labs", "fixtures", "tcplab"):
            shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("conftest.py", "pyproject.toml"):
            shutil.copy(REPO / name, repo / name)
        skip = shutil.ignore_patterns("__pycache__", "pip*", "setuptools*", "pkg_resources", "_distutils_hack",
                                      "__editable__*", "tcplab-*", "distutils-precedence.pth")
        shutil.copytree(site.getsitepackages()[0], pkgs, ignore=skip)
        subprocess.run(["chmod", "-R", "a+rX", str(top)], check=True)

        def drop():
            os.setgid(gid)
            os.setuid(uid)
        r = subprocess.run([exe, "-m", "pytest", "labs/", "-q"], cwd=repo, capture_output=True, text=True,
                           timeout=120, preexec_fn=drop,
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(top),
                                "PYTHONPATH": str(pkgs), "PYTHONDONTWRITEBYTECODE": "1"})
    finally:
        shutil.rmtree(top, ignore_errors=True)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "need root: run  sudo .venv/bin/python -m pytest labs/" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_root_run_leaves_no_caches_in_the_repo(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", ".pytest_cache"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as a user's shell
    r = subprocess.run([sys.executable, "-m", "pytest", "labs/test_reset.py", "tests/unit/test_trace.py", "-q"],
                       cwd=copy, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:]
    left = [str(p.relative_to(copy)) for p in copy.rglob("*") if p.name in ("__pycache__", ".pytest_cache")]
    assert left == []


def test_root_without_cap_sys_admin_gets_the_privileged_hint():
    """What a user sees in a container run without --privileged: one line naming the fix."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    r = subprocess.run(["setpriv", "--bounding-set", "-sys_admin", sys.executable, "-m", "pytest",
                        "labs/test_reset.py", "-q"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 4, r.stdout[-2000:]
    assert "cannot create network namespaces here: unshare(CLONE_NEWNET) was refused (EPERM)" in r.stdout
    assert "In Docker use --privileged" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
