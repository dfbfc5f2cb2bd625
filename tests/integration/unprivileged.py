"""An ordinary user's installation of tcplab, for tests that run it without root.

The checkout and its venv may live where an unprivileged user cannot read them (under /root, with
an interpreter from pyenv), so the user gets copies: tcplab installed (not editable) into a folder,
the venv's other packages, and a venv of a system Python of the same version that sees both.
Everything lives under the test's ``tmp_path``, made readable for that user.
"""
from __future__ import annotations

import os
import pwd
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class User:
    uid: int
    gid: int
    home: Path
    python: Path
    repo: Path

    def run(self, argv: list[str], *, cwd: Path | None = None, timeout: float = 300, wrapper=(), env=None):
        """``argv`` as this user (``python``/``tcplab`` at its start mean the user's), from a copy
        of the checkout unless ``cwd`` is given."""
        if argv[0] == "python":
            argv = [str(self.python), *argv[1:]]
        elif argv[0] == "tcplab":
            argv = [str(self.python), "-m", "tcplab", *argv[1:]]

        def drop():
            os.setgid(self.gid)
            os.setuid(self.uid)
        return subprocess.run([*wrapper, *argv], cwd=cwd or self.repo, capture_output=True, text=True,
                              timeout=timeout, preexec_fn=drop,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
                                   "PYTHONDONTWRITEBYTECODE": "1", **(env or {})})


def unprivileged_ids() -> tuple[int, int]:
    for name in ("nobody", "daemon"):
        try:
            pw = pwd.getpwnam(name)
            return pw.pw_uid, pw.pw_gid
        except KeyError:
            continue
    pytest.skip("no unprivileged user account (nobody, daemon) on this machine")


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


def make_user(top: Path, with_repo: tuple[str, ...] = ("labs", "tests/integration/hostile", "assignments")) -> User:
    uid, gid = unprivileged_ids()
    exe = system_python(uid, gid)
    top.mkdir(parents=True, exist_ok=True)
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
    for name in with_repo:
        shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", repo / "pyproject.toml")
    subprocess.run([exe, "-m", "venv", "--without-pip", str(venv)], check=True)
    vsite = next((venv / "lib").glob("python*/site-packages"))
    (vsite / "tcplab-test.pth").write_text(f"{inst}\n{pkgs}\n")
    subprocess.run(["chmod", "-R", "a+rX", str(top)], check=True)
    subprocess.run(["chown", "-R", f"{uid}:{gid}", str(repo)], check=True)
    return User(uid, gid, top, venv / "bin" / "python", repo)
