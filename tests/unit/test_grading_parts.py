"""Grading without the kernel: predictions scored field by field, assignment folders and their
preflight, sandbox limits, the Classroom payload."""
import json

import pytest

from tcplab import ConfigError, Trace
from tcplab.grading import Assignment, Limits
from tcplab.grading.predict import grade_prediction
from tcplab.grading.results import classroom_payload

from .pcapgen import handshake_and_close, write

RIGHT = """
> S 0:0(0)
< S. 0:0(0) ack 1
> . 1:1(0) ack 1
> P. 1:6(5) ack 1
< . 1:1(0) ack 6
> F. 6:6(0) ack 1
< F. 1:1(0) ack 7
> . 7:7(0) ack 2
"""


@pytest.fixture
def conn(tmp_path):
    return Trace.from_pcap(write(tmp_path / "t.pcap", handshake_and_close())).connection(port=7788)


def test_a_right_prediction_scores_everything(conn):
    p = grade_prediction(RIGHT, conn)
    assert (p.fraction, p.right, p.total) == (1.0, 40, 40)
    assert all(r.endswith("right") for r in p.rows)


def test_each_wrong_field_costs_a_fifth_of_its_segment(conn):
    text = RIGHT.replace("< F. 1:1(0) ack 7", "< F. 1:1(0) ack 6")
    p = grade_prediction(text, conn)
    assert (p.right, p.total) == (39, 40)
    assert "segment 7: you wrote '< F. 1:1(0) ack 6'; observed < F. 1:1(0) ack 7: wrong ack (observed 7)" in p.rows


def test_missing_and_extra_lines_cost_whole_segments(conn):
    short = "\n".join(RIGHT.strip().splitlines()[:6])
    p = grade_prediction(short, conn)
    assert (p.right, p.total) == (30, 40)
    assert p.rows[-1] == "segment 8: missing from your prediction; observed > . 7:7(0) ack 2"
    p = grade_prediction(RIGHT + "> . 7:7(0) ack 2\n", conn)
    assert (p.right, p.total) == (40, 45)
    assert "but no such segment was sent" in p.rows[-1]


def test_a_field_left_out_is_wrong(conn):
    p = grade_prediction(RIGHT.replace("> S 0:0(0)", "> S"), conn)
    assert p.right == 38   # seq and length missing


def test_a_prediction_that_cannot_be_read_names_its_line(conn):
    with pytest.raises(ConfigError, match=r"line 3 '< Q 0:0\(0\)': unknown TCP flag"):
        grade_prediction("> S 0:0(0)\n\n< Q 0:0(0)\n", conn)
    with pytest.raises(ConfigError, match="no repeat marks"):
        grade_prediction("> S 0:0(0) +\n", conn)
    with pytest.raises(ConfigError, match="the prediction is empty"):
        grade_prediction("# nothing\n", conn)


def _assignment(tmp_path, toml: str):
    (tmp_path / "tests").mkdir(parents=True)
    (tmp_path / "assignment.toml").write_text(toml)
    return Assignment.load(tmp_path)


def test_assignment_preflight(tmp_path):
    a = _assignment(tmp_path / "a", 'files = ["client.py", "notes.txt"]\n')
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "client.py").write_text("import socket\nif True\n    pass\n")
    assert a.preflight(sub) == ["client.py has a syntax error at line 2: expected ':'",
                                "notes.txt is missing from the submission (hand in a file named exactly notes.txt)"]
    (sub / "client.py").write_text("print('ok')\n")
    (sub / "notes.txt").symlink_to("/etc/passwd")
    assert a.preflight(sub) == ["notes.txt is missing from the submission (hand in a file named exactly notes.txt)"]


@pytest.mark.parametrize("toml, message", [
    ('files = "client.py"\n', "give a list of file names"),
    ('caps = ["net_admin"]\n', "only net_raw can be granted"),
    ('[limits]\nwall = 0\n', r"\[limits\] wall=0 is out of range"),
    ('[limits]\nmemory = 5\n', "valid keys: wall, cpu, memory_mb"),
    ('file = ["x"]\n', "unknown key"),
])
def test_bad_assignment_toml_names_the_fix(tmp_path, toml, message):
    with pytest.raises(ConfigError, match=message):
        _assignment(tmp_path, toml)


def test_not_an_assignment_folder(tmp_path):
    with pytest.raises(ConfigError, match="has no assignment.toml"):
        Assignment.load(tmp_path)


def test_limits_become_prlimit_arguments():
    assert Limits(cpu=3, memory_mb=256, processes=8).prlimit_args() == [
        "--as=268435456", "--nproc=8", "--cpu=3:4", "--fsize=16777216", "--nofile=256", "--core=0"]
    with pytest.raises(ConfigError, match="processes=0 is out of range"):
        Limits(processes=0)


def test_classroom_payload():
    res = {"score": 3, "tests": [
        {"name": "tests/t.py::test_a", "score": 2, "max_score": 2, "status": "passed", "output": ""},
        {"name": "tests/t.py::test_b", "score": 1, "max_score": 3, "status": "failed", "output": "why"}]}
    p = classroom_payload(res)
    assert p["status"] == "fail" and p["max_score"] == 5
    assert [(t["name"], t["status"], t["score"], t["message"]) for t in p["tests"]] == [
        ("test_a", "pass", 2, ""), ("test_b", "fail", 1, "why")]
    assert classroom_payload({"score": 0, "output": "no namespaces", "tests": []})["status"] == "error"


def test_time_limits_stretch_where_the_cpu_is_emulated(monkeypatch):
    """In the VM (TCPLAB_TIME_SCALE, set by tcplab vm from TCG and the CPU quota) a limit meant to
    stop a hang stretches, so an honest program is not stopped for the emulator's slowness."""
    from tcplab.grading.sandbox import Limits, time_scale
    from tcplab.lab.vm import time_scale as vm_scale
    monkeypatch.delenv("TCPLAB_TIME_SCALE", raising=False)
    assert time_scale() == 1
    monkeypatch.setenv("TCPLAB_TIME_SCALE", "10")
    assert time_scale() == 10
    assert Limits(wall=6, cpu=5).scaled(10) == Limits(wall=60, cpu=50)
    monkeypatch.setenv("TCPLAB_TIME_SCALE", "0.5")
    with pytest.raises(ConfigError, match=r"TCPLAB_TIME_SCALE='0.5' is out of range: a number from 1 to 100"):
        time_scale()
    monkeypatch.setattr("tcplab.lab.vm.cgroup_limits", lambda: (0.5, None))
    assert vm_scale("tcg") == 10 and vm_scale("kvm") == 2
    monkeypatch.setattr("tcplab.lab.vm.cgroup_limits", lambda: (None, None))
    assert vm_scale("tcg") == 5 and vm_scale("kvm") == 1


def test_a_test_that_could_not_run_makes_the_run_no_grade(tmp_path):
    from tcplab.grading import Gradebook, TestResult
    from tcplab.grading.results import is_cannot_grade
    book = Gradebook(tmp_path / "results.json")
    book.record(TestResult("a", 5, 5, "passed"))
    book.write()
    assert json.loads((tmp_path / "results.json").read_text())["score"] == 5
    assert book.cannot_grade == ""
    book.record(TestResult("b", 3, 0, "failed", not_run="the nft command is not installed"))
    data = json.loads((tmp_path / "results.json").read_text())
    assert is_cannot_grade(data) == "1 of 2 tests could not run on this machine: the nft command is not installed"
    assert data["tests"] == [] and data["visibility"] == "hidden"
    assert "not run here: the nft command" in book.table() and "not a score" in book.table()
