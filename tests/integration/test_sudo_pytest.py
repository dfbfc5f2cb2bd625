"""`sudo pytest labs/` as written: the shim ci/setup installs in /usr/local/sbin (first on sudo's
secure_path) runs the nearest tcplab venv's pytest, and leaves every other pytest alone."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHIM = REPO / "ci" / "pytest-shim"
SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _shim_env(tmp_path, extra_path=""):
    """sudo's environment: secure_path, with the shim (from this checkout) first."""
    bin_ = tmp_path / "sbin"
    bin_.mkdir(exist_ok=True)
    shutil.copy(SHIM, bin_ / "pytest")
    return {"PATH": f"{bin_}:{SECURE_PATH}{extra_path}", "HOME": "/root"}


def test_sudo_pytest_labs_runs_the_checkouts_venv_with_every_argument(tmp_path):
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("this checkout has no .venv: run sudo ci/setup")
    # -n 0: every argument reaches pytest (labs/ alone would run on several workers, whose
    # summary does not count the deselected)
    r = subprocess.run(["pytest", "labs/test_reset.py", "-k", "ipv4", "-n", "0", "-q", "-p", "no:cacheprovider",
                        f"--basetemp={tmp_path / 'bt'}"], cwd=REPO, env=_shim_env(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "2 passed, 2 deselected" in r.stdout


def test_from_a_subfolder_too(tmp_path):
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("this checkout has no .venv: run sudo ci/setup")
    r = subprocess.run(["pytest", "--version"], cwd=REPO / "labs", env=_shim_env(tmp_path),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "pytest" in r.stdout + r.stderr


def test_another_projects_pytest_is_left_alone(tmp_path):
    other = tmp_path / "other-bin"
    other.mkdir()
    (other / "pytest").write_text("#!/bin/sh\necho \"the other project's pytest: $*\"\n")
    (other / "pytest").chmod(0o755)
    project = tmp_path / "someone-elses-project"
    project.mkdir()
    r = subprocess.run(["pytest", "-x", "tests/"], cwd=project, env=_shim_env(tmp_path, f":{other}"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == "the other project's pytest: -x tests/\n", r.stderr


def test_a_checkout_not_yet_set_up_says_what_to_run_first(tmp_path):
    fresh = tmp_path / "fresh-clone"
    (fresh / "labs").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", fresh)
    r = subprocess.run(["pytest", "labs/"], cwd=fresh, env=_shim_env(tmp_path), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 4
    assert r.stderr.strip() == (f"pytest: this tcplab checkout ({fresh.resolve()}) is not set up yet: "
                                f"run  sudo {fresh.resolve()}/ci/setup  first")


def test_the_installed_shim_is_this_one():
    installed = Path("/usr/local/sbin/pytest")
    if not installed.exists():
        pytest.skip("ci/setup has not installed the shim on this machine")
    if "tcplab-pytest-shim" not in installed.read_text(errors="replace"):
        pytest.skip("/usr/local/sbin/pytest is another program's; ci/setup leaves it alone")
    assert installed.read_bytes() == SHIM.read_bytes() and os.access(installed, os.X_OK)


def test_sudo_tcplab_runs_the_checkouts_cli(tmp_path):
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("this checkout has no .venv: run sudo ci/setup")
    env = _shim_env(tmp_path)
    shutil.copy(SHIM, tmp_path / "sbin" / "tcplab")
    r = subprocess.run(["tcplab", "--help"], cwd=REPO / "labs", env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("usage: tcplab COMMAND"), r.stderr
    r = subprocess.run(["tcplab", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 127 and "tcplab: command not found" in r.stderr
