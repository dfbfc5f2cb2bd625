"""tcplab as an ordinary user, without sudo: the labs and the grader enter a user namespace where
the user is root (tcplab.lab.where), and say so; where no user namespace can be had either, one
line says what works instead."""
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .test_sandbox import ASSIGNMENT, check_hostile_grades, leftovers, root_namespace, write_class
from .doctor_check import doctor_explains_the_run
from .unprivileged import fresh_user

pytestmark = pytest.mark.needs_root
REPO = Path(__file__).resolve().parents[2]
DOCKERLIKE = Path(__file__).parent / "dockerlike.py"
#: the labs that need the kernel's exact record of states, which needs tracefs and perf events on
#: tracepoints (root in the machine's namespaces); rootless they skip with this reason and its fix,
#: every other lab runs
STATE_RECORD_SKIP = "needs root in the machine's own namespaces"


@pytest.fixture
def user():
    # not under tmp_path: pytest's folders are root's alone (0700)
    top = Path(tempfile.mkdtemp(prefix="tcplab-user-"))
    try:
        with fresh_user(top) as u:
            yield u
    finally:
        shutil.rmtree(top, ignore_errors=True)


def summary_counts(out: str) -> dict[str, int]:
    last = out.strip().splitlines()[-1]
    return {k: int(n) for n, k in re.findall(r"(\d+) (passed|skipped|failed|errors?)", last)}


def test_labs_run_rootless_in_a_login_shell(user):
    """A student as they are: a fresh user, a login shell, Debian's user PATH (nft is in
    /usr/sbin, which it lacks).  Every lab runs but those that read the kernel's record, which
    skip naming the facility and the fix; nothing skips for a tool that is installed."""
    assert "/usr/sbin" not in user.login_path().split(":")
    r = user.run(["python", "-m", "pytest", "labs/", "-n", "2", "-rs", "-p", "no:cacheprovider"], timeout=280)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert re.search(r"tcplab: kernel \S+, mode rootless \(root inside a user namespace of uid \d+", out), out[:2000]
    skips = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert all(STATE_RECORD_SKIP in s or "slow lab" in s for s in skips), "\n".join(skips)
    assert all("sudo pytest labs/" in s and "--tcplab-vm" in s for s in skips if STATE_RECORD_SKIP in s)
    counts = summary_counts(out)
    state_runs = sum(int(re.match(r"SKIPPED \[(\d+)\]", s).group(1)) for s in skips if STATE_RECORD_SKIP in s)
    collected = user.run(["python", "-m", "pytest", "labs/", "--collect-only", "-q", "-p", "no:cacheprovider"])
    total = int(re.search(r"(\d+) tests? collected", collected.stdout).group(1))
    print(f"rootless, a fresh user in a login shell: {counts} of {total} labs; state-record skips {state_runs}")
    assert counts.get("passed", 0) == total - counts.get("skipped", 0) and "failed" not in counts, out[-3000:]
    assert counts.get("passed", 0) > state_runs > 0, counts
    doctor = user.run(["tcplab", "doctor"])
    doctor_explains_the_run(doctor.stdout, doctor.returncode, out, r.returncode)


def test_grading_rootless_is_sandboxed(user):
    subs = write_class(user.home / "class")
    subprocess.run(["chmod", "-R", "a+rwX", str(subs)], check=True)
    out = user.repo / "out"     # the user's own folder
    before = root_namespace()
    r = user.run(["tcplab", "grade", str(user.repo / "tests/integration/hostile"), str(subs), "--out", str(out),
                  "-j", "2", "--no-progress"], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mode rootless" in r.stderr
    check_hostile_grades(out)
    assert root_namespace() == before
    assert leftovers(user.home, uids={user.uid}) == []


def test_every_reference_gets_full_marks_rootless(user):
    """Graded as the student's own machine grades it (a login shell, no sudo): each assignment's
    reference gets every point, and nothing is "cannot grade here"."""
    import csv
    for assignment in sorted(p.parent for p in (user.repo / "assignments").glob("*/assignment.toml")):
        out = user.home / "grades" / assignment.name
        r = user.run(["tcplab", "grade", str(assignment), str(assignment / "reference"), "--out", str(out),
                      "--no-progress"], timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        row = next(csv.DictReader(open(out / "grades.csv")))
        assert row["status"] == "graded" and float(row["score"]) == float(row["max_score"]) > 0, (row, r.stderr)


def clone_for(user) -> Path:
    """The checkout as the student clones it: their own, in their home."""
    repo = user.home / "tcplab"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info",
                                                              "ci-artifacts", ".pytest_cache"))
    subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", str(repo)], check=True)
    return repo


def test_a_student_without_sudo_sets_up_and_runs_the_labs_with_one_command(user):
    """The Quick start's command for a student: ci/labs in their own clone, no sudo, on a
    machine where the Debian packages are installed: it makes the venv and runs the labs."""
    repo = clone_for(user)
    r = user.run(["ci/labs", "-k", "three_way or reset", "-rs"], cwd=repo, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "creating virtual environment .venv/" in out and "mode rootless" in out
    assert re.search(r"\d+ passed", out) and "SKIPPED" not in out, out[-3000:]
    assert "run  sudo" not in out and "must run as root" not in out, out[:3000]


def test_a_student_without_sudo_is_told_which_packages_are_missing_and_who_installs_them(user):
    """Packages missing (an empty /usr/sbin, in a private mount namespace): ci/setup without sudo
    installs nothing, names each missing package and the administrator's command, exit 3."""
    repo = clone_for(user)
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        'mount -t tmpfs tmpfs /usr/sbin && exec su - "$1" -c "cd $2 && ci/setup"', "empty-sbin",
                        user.name, str(repo)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "these Debian packages are missing: nftables iproute2" in r.stderr
    assert "an administrator runs  sudo apt-get install nftables iproute2" in r.stderr
    assert not (repo / ".venv").exists()


def test_no_namespace_at_all_says_what_works_in_one_line(user):
    """User namespaces refused (TCPLAB_USERNS=0 here; Docker's seccomp profile does it for real,
    below): the labs stop at once, in one line naming sudo and --tcplab-vm."""
    r = user.run(["python", "-m", "pytest", "labs/test_reset.py", "-p", "no:cacheprovider"],
                 env={"TCPLAB_USERNS": "0"}, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 4, out
    assert "tcplab cannot build a lab network here" in out and "--tcplab-vm" in out and "sudo" in out
    assert "Traceback" not in out


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the seccomp wrapper knows x86_64's syscall numbers")
def test_seccomp_refusing_unshare_says_what_works_in_one_line(user):
    r = user.run([str(user.python), str(DOCKERLIKE), str(user.python), "-m", "pytest",
                  "labs/test_reset.py", "-n", "2", "-p", "no:cacheprovider"], timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 4, out
    line = next(l for l in out.splitlines() if "tcplab cannot build a lab network here" in l)
    assert "unshare(CLONE_NEWNET) was refused (EPERM" in line and "unshare(CLONE_NEWUSER) was refused (EPERM" in line
    assert "Traceback" not in out


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the seccomp wrapper knows x86_64's syscall numbers")
def test_root_under_a_seccomp_filter_says_what_works_in_one_line():
    """Root in Docker without --privileged (its seccomp profile refuses unshare): one line."""
    r = subprocess.run([sys.executable, str(DOCKERLIKE), sys.executable, "-m", "pytest", "labs/test_reset.py",
                        "-p", "no:cacheprovider"], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                       text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 4, out
    assert "tcplab cannot build a lab network here (network namespaces: unshare(CLONE_NEWNET) was refused" in out
    assert "in Docker: --privileged" in out and "--tcplab-vm" in out and "Traceback" not in out


@pytest.mark.alone
@pytest.mark.skipif(platform.machine() != "x86_64", reason="the seccomp wrapper knows x86_64's syscall numbers")
def test_pytest_tcplab_vm_runs_the_labs_in_the_vm_where_nothing_else_works(tmp_path):
    """Docker's profile refuses every namespace: `pytest --tcplab-vm` says so in one line, boots
    the VM and runs the labs there; the guest's exit status is pytest's."""
    r = subprocess.run([sys.executable, str(DOCKERLIKE), sys.executable, "-m", "pytest", "labs/test_reset.py",
                        "--tcplab-vm", "-p", "no:cacheprovider"], cwd=Path(__file__).resolve().parents[2],
                       capture_output=True, text=True, timeout=900, env={**os.environ, "TCPLAB_VM_CPUS": "1"})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "[tcplab vm] running this pytest session in a VM" in out
    assert "mode vm" in out and "4 passed" in out
