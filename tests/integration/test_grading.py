"""Grading on top of plain pytest: points, partial credit, feedback without tracebacks,
results.json (also after a crash part-way), the score table, and the score in the JUnit XML."""
import json
from pathlib import Path
import subprocess
import sys
import xml.etree.ElementTree as ET

LAB = '''
import os
import pytest

HANDSHAKE = """
    > S 0:0(0)
    < S. 0:0(0) ack 1
    > . 1:1(0) ack 1
"""


@pytest.mark.lab("H1", points=5, hint="a FIN closes, an RST aborts")
def test_close_with_fin(hosts, score):
    with hosts.capture() as cap:
        server = hosts.server.listen(port=7788)
        client = hosts.client.connect(server.address)
        server.accept()
        client.abort()
    conn = cap.trace.connection(port=7788)
    conn.expect(HANDSHAKE, complete=False)
    score.partial(3, "the handshake is right")
    conn.expect(HANDSHAKE + "> F. 1:1(0) ack 1")


@pytest.mark.lab("H2", points=2)
def test_passes(hosts):
    pass


@pytest.mark.lab("H3", points=2, visibility="hidden")
def test_message(hosts):
    assert 1 == 2, "the server never reached CLOSE_WAIT"


@pytest.mark.lab("H4", points=1)
def test_crashes_the_run(hosts):
    if os.environ.get("CRASH"):
        os._exit(3)


@pytest.mark.lab("H5", points=4)
def test_after_the_crash(hosts):
    pass
'''


def _grade(tmp_path, *args, env=None):
    import os
    (tmp_path / "test_graded.py").write_text(LAB)
    out = tmp_path / "results.json"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--grade-json", str(out),
                        f"--junitxml={tmp_path / 'j.xml'}", f"--basetemp={tmp_path / 'bt'}", *args],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})
    return r, json.loads(out.read_text()) if out.exists() else None


def test_scores_partial_credit_feedback_and_table(tmp_path):
    r, res = _grade(tmp_path)
    assert r.returncode == 1, r.stdout[-3000:]
    tests = {t["name"].split("::")[1]: t for t in res["tests"]}
    assert res["score"] == 3 + 2 + 0 + 1 + 4 and sum(t["max_score"] for t in res["tests"]) == 14
    fin = tests["test_close_with_fin"]
    assert (fin["score"], fin["max_score"], fin["status"]) == (3, 5, "failed")
    assert fin["output"].startswith('segment 4 (client > server) differs: flags expected "F." but saw "R."')
    assert "partial credit:\n  3 of 5 points: the handshake is right" in fin["output"]
    assert "\n\nhint: a FIN closes, an RST aborts\n\npicture of the exchange: " in fin["output"]
    # the ladder of a graded test is kept beside results.json and listed in extra_data
    ladder = fin["extra_data"]["ladders"][0]
    assert fin["output"].endswith(ladder) and (tmp_path / ladder).read_text().startswith("<svg")
    assert [Path(p).name for p in fin["extra_data"]["pcaps"]] == ["capture-client.pcap", "capture-server.pcap"]
    assert all((tmp_path / p).is_file() for p in fin["extra_data"]["pcaps"])
    msg = tests["test_message"]
    assert (msg["score"], msg["output"], msg["visibility"]) == (0, "the server never reached CLOSE_WAIT", "hidden")
    passes = dict(tests["test_passes"])
    passes.pop("extra_data", None)       # its pcaps and ladder, if the lab captured
    assert passes == {"name": "test_graded.py::test_passes", "score": 2, "max_score": 2,
                      "status": "passed", "output": "", "visibility": "visible"}
    for t in res["tests"]:
        assert "Traceback" not in t["output"] and 'File "' not in t["output"]
    assert set(res) == {"score", "execution_time", "output", "tests"}
    table = r.stdout[r.stdout.index("= scores ="):]
    import re
    assert re.search(r"test_graded.py::test_close_with_fin +3 +5  segment 4 \(client > server\) differs", table)
    assert re.search(r"\ntotal +10 +14\n", table)
    props = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
             for c in ET.parse(tmp_path / "j.xml").getroot().iter("testcase")}
    assert props["test_close_with_fin"]["points"] == "5" and props["test_close_with_fin"]["score"] == "3"


def test_results_json_survives_a_crash_part_way(tmp_path):
    r, res = _grade(tmp_path, env={"CRASH": "1"})
    assert r.returncode == 3
    tests = {t["name"].split("::")[1]: t for t in res["tests"]}
    assert tests["test_passes"]["score"] == 2 and tests["test_close_with_fin"]["score"] == 3   # ran: kept
    for name in ("test_crashes_the_run", "test_after_the_crash"):                          # did not: 0
        assert tests[name]["score"] == 0
        assert tests[name]["output"] == "did not run: the grading run stopped before this test"
    assert res["score"] == 5


def test_bad_points_are_a_usage_error(tmp_path):
    (tmp_path / "test_bad.py").write_text("import pytest\n\n@pytest.mark.lab('H1', points=-1)\n"
                                          "def test_x(hosts):\n    pass\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--grade-json",
                        str(tmp_path / "r.json")], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 4 and "lab(points=-1): give a number of points >= 0" in r.stderr + r.stdout
