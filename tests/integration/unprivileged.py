"""An ordinary user, as a student really is: a user made for the test, in a login shell
(``su - NAME``), with Debian's user PATH (no /usr/sbin) and nothing of root's environment.

The checkout and its venv may live where such a user cannot read them (under /root, with an
interpreter from pyenv), so the user gets what an administrator would set up: tcplab installed
(not editable) into a folder, the venv's other packages, and a venv of a system Python of the same
version that sees both.  Everything lives under a temporary folder readable by that user; the
user, its home and its processes are removed afterwards.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shlex
import shutil
import signal
import site
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
USERADD, USERDEL = "/usr/sbin/useradd", "/usr/sbin/userdel"


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: Path
    python: Path
    repo: Path

    def run(self, argv: list[str], *, cwd: Path | None = None, timeout: float = 300, env=None):
        """``argv`` as this user in a login shell, from its copy of the checkout unless ``cwd`` is
        given; ``python``/``tcplab`` at its start mean the user's installation; ``env`` is added
        to the login's own environment."""
        if argv[0] == "python":
            argv = [str(self.python), *argv[1:]]
        elif argv[0] == "tcplab":
            argv = [str(self.python), "-m", "tcplab", *argv[1:]]
        assigns = [f"{k}={shlex.quote(v)}" for k, v in {"PYTHONDONTWRITEBYTECODE": "1", **(env or {})}.items()]
        script = f"cd {shlex.quote(str(cwd or self.repo))} && exec env {' '.join(assigns)} {shlex.join(argv)}"
        proc = subprocess.Popen(["su", "-", self.name, "-s", "/bin/bash", "-c", script], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(f"{argv} as {self.name} still running after {timeout:g} s:\n"
                                 f"{out[-2000:]}{err[-2000:]}") from None
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def login_path(self) -> str:
        return self.run(["sh", "-c", "echo $PATH"], cwd=self.home).stdout.strip()


def _locked(argv: list[str]) -> None:
    """useradd/userdel, again while another xdist worker holds /etc/passwd's lock (exit 10)."""
    deadline = time.monotonic() + 30
    while True:
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode == 0:
            return
        if r.returncode != 10 or time.monotonic() > deadline:
            raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
        time.sleep(0.05)   # another process's file lock: polled against the deadline above


@contextlib.contextmanager
def fresh_user(top: Path, with_repo: tuple[str, ...] = ("labs", "tests/integration/hostile", "assignments")):
    """A user made for the test (its own name, uid, group and home under ``top``, Debian's
    defaults otherwise) holding an ordinary installation of tcplab (:func:`install_for`);
    removed afterwards, with its home and every process it left."""
    if not (os.path.exists(USERADD) and shutil.which("su")):
        pytest.skip("no useradd and su (Debian's passwd and util-linux) to make a test user with")
    name = f"tcplab-t{secrets.token_hex(4)}"
    top.mkdir(parents=True, exist_ok=True)
    home = top / "home"
    _locked([USERADD, "--create-home", "--home-dir", str(home), "--shell", "/bin/bash", "--user-group", name])
    pw = pwd.getpwnam(name)
    try:
        yield install_for(top, name, pw.pw_uid, pw.pw_gid, home, with_repo)
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        # what the user's own runs made in the shared folders (pytest's /tmp/pytest-of-NAME):
        # the uid is this test's alone, so everything it owns there goes with it
        for shared in ("/tmp", "/var/tmp", "/dev/shm"):
            subprocess.run(["find", shared, "-mindepth", "1", "-maxdepth", "1", "-uid", str(pw.pw_uid),
                            "-exec", "rm", "-rf", "{}", "+"], capture_output=True)
        _locked([USERDEL, "--remove", name])


def system_python(uid: int, gid: int) -> str:
    """A Python of this interpreter's version that an unprivileged user may run."""
    want = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for exe in (f"/usr/bin/{want}", f"/usr/local/bin/{want}", sys.executable):
        try:
            r = subprocess.run([exe, "-c", "import sys, venv; print(sys.version_info[:2])"], capture_output=True,
                               text=True, preexec_fn=lambda: (os.setgid(gid), os.setuid(uid)))
        except (PermissionError, FileNotFoundError):
            continue
        if r.returncode == 0 and r.stdout.strip() == str(sys.version_info[:2]):
            return exe
    pytest.skip(f"no Python {want} with venv that an unprivileged user may run")


def install_for(top: Path, name: str, uid: int, gid: int, home: Path, with_repo: tuple[str, ...]) -> User:
    """tcplab as an administrator installs it for users: a venv of a system Python under ``top``
    that sees the engine, the plugin and their packages, and a copy of ``with_repo`` the user owns."""
    exe = system_python(uid, gid)
    pkgs, inst, repo, venv = top / "site-packages", top / "tcplab-install", top / "repo", top / "venv"
    skip = shutil.ignore_patterns("__pycache__", "pip", "pip-*", "setuptools*", "pkg_resources", "_distutils_hack",
                                  "__editable__*", "tcplab-*", "tcplab_*", "distutils-precedence.pth")
    shutil.copytree(site.getsitepackages()[0], pkgs, ignore=skip)
    # what `pip install .` puts in site-packages (the engine, the plugin under its installed
    # name, the entry point that registers it), without building a wheel
    shutil.copytree(REPO / "tcplab", inst / "tcplab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "fixtures", inst / "tcplab_pytest", ignore=shutil.ignore_patterns("__pycache__"))
    meta = inst / "tcplab-0.1.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: tcplab\nVersion: 0.1.0\n")
    (meta / "entry_points.txt").write_text("[pytest11]\ntcplab = tcplab_pytest.plugin\n")
    for folder in with_repo:
        shutil.copytree(REPO / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", repo / "pyproject.toml")
    subprocess.run([exe, "-m", "venv", "--without-pip", str(venv)], check=True)
    vsite = next((venv / "lib").glob("python*/site-packages"))
    (vsite / "tcplab-test.pth").write_text(f"{inst}\n{pkgs}\n")
    subprocess.run(["chmod", "-R", "a+rX", str(top)], check=True)
    subprocess.run(["chown", "-R", f"{uid}:{gid}", str(repo), str(home)], check=True)
    return User(name, uid, gid, home, venv / "bin" / "python", repo)
