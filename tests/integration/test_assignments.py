"""Each assignment in assignments/: its reference solution scores full marks, its starter scores
low, graded the way instructors grade (``tcplab grade``, both in one batch)."""
import csv
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.needs_root
REPO = Path(__file__).resolve().parents[2]
ASSIGNMENTS = sorted(p.parent for p in (REPO / "assignments").glob("*/assignment.toml"))


def grade(assignment: Path, subs: dict, out: Path) -> dict:
    cls = out.parent / "class"
    for name, src in subs.items():
        shutil.copytree(src, cls / name)
    r = subprocess.run([sys.executable, "-m", "tcplab", "grade", str(assignment), str(cls), "--out", str(out),
                        "--no-progress"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return {row["student"]: row for row in csv.DictReader(open(out / "grades.csv"))}


def test_there_are_five_assignments():
    assert [p.name for p in ASSIGNMENTS] == ["1-client", "2-handshake", "3-predict", "4-recovery", "5-kernel"]
    for a in ASSIGNMENTS:
        for part in ("README.md", "starter", "reference", "tests"):
            assert (a / part).exists(), f"{a.name} has no {part}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=[a.name for a in ASSIGNMENTS])
def test_reference_full_marks_starter_low(assignment, tmp_path):
    grades = grade(assignment, {"reference": assignment / "reference", "starter": assignment / "starter"},
                   tmp_path / "out")
    ref, start = grades["reference"], grades["starter"]
    assert float(ref["score"]) == float(ref["max_score"]) > 0, ref
    assert float(start["score"]) < 0.5 * float(start["max_score"]), start
    # the starter's feedback: no traceback of the grader's, a ladder picture beside each graded test
    res = json.loads((tmp_path / "out" / "starter" / "results.json").read_text())
    failed = [t for t in res["tests"] if t["status"] == "failed"]
    assert failed
    for t in failed:
        assert "Traceback" not in t["output"] and "site-packages" not in t["output"], t["output"]
        assert t["output"].strip()
    ladders = [l for t in res["tests"] for l in t.get("extra_data", {}).get("ladders", [])]
    assert ladders
    for rel in ladders:
        root = ET.parse(tmp_path / "out" / "starter" / rel).getroot()
        assert root.tag.endswith("svg") and root.findall(".//{http://www.w3.org/2000/svg}line")


def test_handshake_rst_trap_is_real(tmp_path):
    """Assignment 2's reference without its rule: the client's kernel resets the half-open
    connection, and the tests that depend on it fail with the reset in the feedback."""
    a = REPO / "assignments" / "2-handshake"
    norule = tmp_path / "norule"
    shutil.copytree(a / "reference", norule)
    (norule / "rules.txt").write_text("# no rule\n")
    grades = grade(a, {"norule": norule}, tmp_path / "out")
    res = json.loads((tmp_path / "out" / "norule" / "results.json").read_text())
    by = {t["name"].split("::")[-1]: t for t in res["tests"]}
    assert by["test_no_reset_reaches_the_server"]["score"] == 0
    assert "a reset from your client host reached the server: > R" in by["test_no_reset_reaches_the_server"]["output"]
    assert by["test_sends_a_syn"]["score"] == 2
    assert float(grades["norule"]["score"]) < 10


def test_broken_submissions_score_zero_with_the_reason(tmp_path):
    a = REPO / "assignments" / "1-client"
    (tmp_path / "syntax").mkdir()
    (tmp_path / "syntax" / "client.py").write_text("def main(:\n")
    (tmp_path / "empty").mkdir()
    grades = grade(a, {"syntax": tmp_path / "syntax", "empty": tmp_path / "empty"}, tmp_path / "out")
    assert grades["syntax"]["score"] == "0" and grades["syntax"]["status"] == "ungradable"
    assert "syntax error at line 1" in grades["syntax"]["note"]
    assert "client.py is missing" in grades["empty"]["note"]
    res = json.loads((tmp_path / "out" / "syntax" / "results.json").read_text())
    assert len(res["tests"]) == 7 and all(t["score"] == 0 for t in res["tests"])
    assert all("syntax error at line 1" in t["output"] for t in res["tests"])


def test_recovery_answers_that_are_not_answers_score_zero(tmp_path):
    """Assignment 4 reads text, so the hostile submissions are files: a link to the grader's
    secrets, a FIFO that would block the reader, a file too big, binary junk, and answers that try
    to be more than a line.  Each scores 0 with the reason; the right answers of the same
    submissions still count."""
    import os
    a = REPO / "assignments" / "4-recovery"
    right = {p.name: p.read_text() for p in (a / "reference").glob("*.txt")}
    cls = tmp_path / "class"      # made in place: copying would follow the link and block on the FIFO
    for name, spoil in {
        "link": lambda f: (f.unlink(), f.symlink_to("/etc/shadow")),
        "fifo": lambda f: (f.unlink(), os.mkfifo(f)),
        "huge": lambda f: f.write_bytes(b"fast_retransmit 6\n" + b"#" * (2 << 20)),
    }.items():
        d = cls / name
        d.mkdir(parents=True)
        for fname, text in right.items():
            (d / fname).write_text(text)
        spoil(d / "middle_loss.txt")
    junk = cls / "junk"
    junk.mkdir()
    (junk / "middle_loss.txt").write_bytes(bytes(range(256)) * 40)
    (junk / "cubic_middle_loss.txt").write_text("fast_retransmit 9\ntimeout 5\n")
    (junk / "tail_loss.txt").write_text("tail_loss_probe __import__('os').system('id')\n")
    (junk / "whole_flight_lost.txt").write_text("timeout 99999999999999999999\n")
    grades = grade(a, {}, tmp_path / "out")
    for name in ("link", "fifo", "huge"):
        assert grades[name]["score"] == "0" and grades[name]["status"] == "ungradable", grades[name]
        assert "middle_loss.txt" in grades[name]["note"], grades[name]
    assert float(grades["junk"]["score"]) == 0, grades["junk"]
    res = json.loads((tmp_path / "out" / "junk" / "results.json").read_text())
    out = {t["name"].split("[")[-1].rstrip("]"): t["output"] for t in res["tests"]}
    assert "write exactly one line" in out["middle_loss"] or "two words" in out["middle_loss"], out["middle_loss"]
    assert "write exactly one line" in out["cubic_middle_loss"]
    assert "the ssthresh is a number of segments" in out["tail_loss"]
    assert "the ssthresh is a number of segments" in out["whole_flight_lost"]


#: the tool each assignment cannot grade without: the wire's nft for the labs' hosts, the
#: template's sysctl line for the scripted peer's scenarios (assignment 5 needs no nft)
NEEDS = {a.name: ("/usr/sbin/sysctl", "sysctl") if a.name == "5-kernel" else ("/usr/sbin/nft", "the nft command is "
                                                                               "not installed") for a in ASSIGNMENTS}


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=[a.name for a in ASSIGNMENTS])
def test_a_machine_without_a_tool_gives_no_grade_never_a_score(assignment, tmp_path):
    """A machine made to lack a tool the assignment needs (a private mount namespace puts
    /dev/null over it): the reference is graded "cannot grade here" with the tool (for nft, its
    package and who installs it); exit 4; results.json hidden from the student, with no score of
    the student's; grades.csv leaves the score empty."""
    tool, says = NEEDS[assignment.name]
    if not Path(tool).exists():
        pytest.skip(f"{tool} is not installed here: sudo ci/setup installs it")
    out = tmp_path / assignment.name
    argv = [sys.executable, "-m", "tcplab", "grade", str(assignment), str(assignment / "reference"), "--out",
            str(out), "--no-progress", "--results-json", str(out / "gradescope.json")]
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f'mount --bind /dev/null {tool} && exec "$@"', "hide-tool", *argv],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 4, r.stderr
    assert "no grade (cannot grade here:" in r.stderr and says in r.stderr and "Traceback" not in r.stderr, r.stderr
    if tool.endswith("nft"):
        assert "apt-get install nftables" in r.stderr
    for res in (out / "reference" / "results.json", out / "gradescope.json"):
        data = json.loads(res.read_text())
        assert data["output"].startswith("cannot grade here:") and says in data["output"], data
        assert data["visibility"] == "hidden" and data["tests"] == [], data
        assert data["extra_data"]["tcplab"] == "cannot grade here"
    row = next(csv.DictReader(open(out / "grades.csv")))
    assert (row["score"], row["status"]) == ("", "cannot grade here"), row


def test_kernel_predictions_that_are_more_than_text_run_nothing_and_score_zero(tmp_path):
    """Assignment 5 reads scripts, never runs a student's: a shell line (that would leave a file),
    a Python block, an option line, an include, a given line changed, a file too big.  Each
    submission is ungradable with the line and the reason, every test scores 0, and no test ran
    the kernel (no capture or ladder kept)."""
    a = REPO / "assignments" / "5-kernel"
    ref = (a / "reference" / "reset_attempts.pkt").read_text()
    pwned = tmp_path / "pwned"
    spoils = {
        "shell": (ref + f"  2.1 `touch {pwned}`\n", "line 36: shell commands (`...`) are not allowed"),
        "python": (ref + f"  2.1 %{{ open({str(pwned)!r}, 'w') }}%\n", "line 36: Python blocks (%{ }%) are not allowed"),
        "option": ("--tolerance_usecs=10000000\n" + ref, "line 1: option lines (--name=value) are not allowed"),
        "include": ("#include \"/etc/shadow\"\n" + ref, "line 1: includes are not allowed"),
        "given": (ref.replace("0.81 < R 101:101(0)", "0.81 < R 1:1(0)"), "this line is given and must stay as the "
                                                                          "template has it: '0.81 < R 101:101(0) win 0'"),
        "huge": (ref + "//" + "x" * 80_000 + "\n", "KiB: a prediction is at most 64 KiB"),
    }
    cls = tmp_path / "class"
    for who, (text, _) in spoils.items():
        shutil.copytree(a / "reference", cls / who)
        (cls / who / "reset_attempts.pkt").write_text(text)
    grades = grade(a, {}, tmp_path / "out")
    for who, (_, says) in spoils.items():
        assert (grades[who]["score"], grades[who]["status"]) == ("0", "ungradable"), grades[who]
        assert says in grades[who]["note"], grades[who]
        res = json.loads((tmp_path / "out" / who / "results.json").read_text())
        assert len(res["tests"]) == 3 and all(t["score"] == 0 and says in t["output"] for t in res["tests"]), res
        assert not any(t.get("extra_data") for t in res["tests"]), res
    assert not pwned.exists()


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=[a.name for a in ASSIGNMENTS])
def test_the_handout_names_only_what_students_get_and_self_tests_with_it(assignment, tmp_path):
    """The handout is the README and the starter's contents: the README sends students to none of
    the instructor's folders (tests/, reference/, --submission), names only files they get, and
    its selftest.py runs in a folder holding just that, on the starter and on the reference."""
    import re
    readme = (assignment / "README.md").read_text()
    for private in ("tests/", "reference/", "--submission", "assignments/"):
        assert private not in readme, f"{assignment.name}/README.md points students at {private}"
    given = {p.name for p in (assignment / "starter").iterdir()} | {"README.md"}
    named = set(re.findall(r"`([\w.-]+\.(?:py|txt|pkt))`", readme))
    assert named <= given | {"client.py", "handshake.py"}, named - given
    assert "selftest.py" in given and "python selftest.py" in readme
    outputs = {}
    for work in ("starter", "reference"):
        handout = tmp_path / work
        shutil.copytree(assignment / "starter", handout)
        for f in (assignment / work).iterdir():
            shutil.copy(f, handout / f.name)
        r = subprocess.run([sys.executable, str(handout / "selftest.py")], cwd=handout, capture_output=True,
                           text=True, timeout=120)
        assert "Traceback" not in r.stderr, r.stderr
        outputs[work] = r.stdout
    if assignment.name in ("3-predict", "4-recovery"):      # a format check: the reference reads whole
        assert "line" not in outputs["reference"] and outputs["reference"].count(".txt: ") >= 3
    elif assignment.name == "5-kernel":                     # a format check, then the scripts on this kernel
        assert "line" not in outputs["starter"].split("\n")[0] or "'= ?' still to answer" in outputs["starter"]
        assert "3 passed, 0 failed, 0 refused" in outputs["reference"], outputs["reference"]
    else:                                                   # the exchange, drawn in the notation
        assert "|---- S " in outputs["reference"] and "[ESTABLISHED]" in outputs["reference"], outputs["reference"]
    assert outputs["starter"] != outputs["reference"]
