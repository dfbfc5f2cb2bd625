"""Grading on course platforms: Gradescope's bundle (run here as Gradescope runs it, and in a
container that forbids namespaces) and GitHub Classroom's result hand-over."""
import base64
import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.needs_root
REPO = Path(__file__).resolve().parents[2]
A1 = REPO / "assignments" / "1-client"


def unpack_bundle(tmp_path, assignment: Path = A1) -> Path:
    """The bundle built by the command, unpacked the way Gradescope does (/autograder/source),
    with the assignment's reference as the submission."""
    z = tmp_path / "autograder.zip"
    r = subprocess.run([sys.executable, "-m", "tcplab", "bundle", str(assignment), "--out", str(z)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    root = tmp_path / "autograder"
    with zipfile.ZipFile(z) as f:
        names = f.namelist()
        f.extractall(root / "source")
    assert {"setup.sh", "run_autograder", "tcplab/pyproject.toml", "assignment/assignment.toml",
            *(f"assignment/tests/{t.name}" for t in (assignment / "tests").glob("test_*.py")),
            *(f"assignment/starter/{f.name}" for f in (assignment / "starter").iterdir())} <= set(names)
    assert not [n for n in names if "reference" in n], "the bundle must not carry the solution"
    shutil.copytree(assignment / "reference", root / "submission")
    return root


def run_autograder(root: Path, wrapper=(), env=None, timeout=300) -> dict:
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "TCPLAB_PYTHON": sys.executable, **(env or {})}
    r = subprocess.run([*wrapper, "bash", str(root / "source" / "run_autograder")], env=env, cwd=root,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads((root / "results" / "results.json").read_text())


def test_gradescope_bundle_grades_the_reference(tmp_path):
    res = run_autograder(unpack_bundle(tmp_path))
    assert res["score"] == 10 and len(res["tests"]) == 7
    assert {t["visibility"] for t in res["tests"]} == {"visible"}


def test_gradescope_bundle_grades_a_script_prediction(tmp_path):
    """Assignment 5 through the bundle: the given lines are checked against the starter it carries."""
    res = run_autograder(unpack_bundle(tmp_path, A1.parent / "5-kernel"))
    assert res["score"] == 10 and len(res["tests"]) == 3, res


DOCKERLIKE = (sys.executable, str(Path(__file__).parent / "dockerlike.py"))
x86_64_only = pytest.mark.skipif(platform.machine() != "x86_64",
                                 reason="the seccomp wrapper knows x86_64's syscall numbers")


@pytest.mark.alone
@x86_64_only
def test_gradescope_without_namespaces_grades_in_the_vm(tmp_path):
    """As Gradescope does it: setup.sh builds the image (packages, QEMU, a kernel, tcplab in its
    own venv), then run_autograder runs in a container without namespaces (Docker's capabilities
    and seccomp profile): the grader boots the VM by itself and the reference scores full marks."""
    root = unpack_bundle(tmp_path)
    r = subprocess.run(["bash", str(root / "source" / "setup.sh")], env=dict(os.environ, AUTOGRADER_ROOT=str(root)),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = run_autograder(root, wrapper=DOCKERLIKE, env={"TCPLAB_PYTHON": str(root / "venv" / "bin" / "python"),
                                                         "TCPLAB_VM_CPUS": "1"}, timeout=900)
    assert res["score"] == 10 and len(res["tests"]) == 7, res


@x86_64_only
def test_gradescope_without_namespaces_or_vm_says_so_in_one_line(tmp_path):
    res = run_autograder(unpack_bundle(tmp_path), wrapper=DOCKERLIKE, env={"TCPLAB_VM_KERNEL": "/nonexistent"})
    assert res["score"] == 0 and res["tests"] == []
    assert "\n" not in res["output"].strip()
    # no grade, for the instructor: hidden from the student, the reason and the fix
    assert res["output"].startswith("cannot grade here: tcplab: cannot create network namespaces here")
    assert res["visibility"] == "hidden" and res["extra_data"]["tcplab"] == "cannot grade here"
    assert "no VM can run: TCPLAB_VM_KERNEL=/nonexistent: no such kernel image" in res["output"]
    assert "setup.sh" in res["output"]


def test_classroom_result_for_the_reporter(tmp_path):
    out, summary = tmp_path / "gh-output", tmp_path / "gh-summary"
    env = dict(os.environ, GITHUB_OUTPUT=str(out), GITHUB_STEP_SUMMARY=str(summary))
    r = subprocess.run([sys.executable, "-m", "tcplab", "grade", str(A1), str(A1 / "starter"), "--out",
                        str(tmp_path / "g"), "--classroom", "--no-progress"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    line = out.read_text().strip()
    assert line.startswith("result=")
    payload = json.loads(base64.b64decode(line[len("result="):]))
    assert payload["version"] == 1 and payload["status"] == "fail" and payload["max_score"] == 10
    scores = {t["name"]: t["score"] for t in payload["tests"]}
    assert scores["test_handshake"] == 1 and scores["test_whole_reply_read"] == 0
    assert "| test_handshake | 1 | 1 |" in summary.read_text()


def test_classroom_workflow_template_runs_the_grader():
    text = (REPO / "ci" / "classroom.yml").read_text()
    assert "tcplab grade" in text and "--classroom" in text
    assert "autograding-grading-reporter" in text and "TCPLAB_RESULTS: ${{ steps.tcplab.outputs.result }}" in text
    assert "runners: tcplab" in text
