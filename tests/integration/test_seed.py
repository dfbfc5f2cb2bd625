"""Random loss you can replay: the seed is recorded, printed in failures, and replays the losses."""
import subprocess
import sys
import textwrap
from pathlib import Path

from tcplab.cli.soak import junit_results

REPO = Path(__file__).resolve().parents[2]
LAB = "labs/test_loss.py::test_data_and_close_survive_random_loss[ipv4]"


def _properties(junit: Path) -> dict[str, str]:
    import xml.etree.ElementTree as ET
    (case,) = ET.parse(junit).getroot().iter("testcase")
    return {p.get("name"): p.get("value") for p in case.iter("property")}


def _run(tmp_path, name, *args, cwd=REPO):
    junit = tmp_path / f"{name}.xml"
    r = subprocess.run([sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider",
                        "--tcplab-backend", "nft", f"--junitxml={junit}", f"--basetemp={tmp_path / name}"],
                       cwd=cwd, capture_output=True, text=True, timeout=240)
    return r, junit


def test_a_seed_replays_the_same_lost_segments_of_a_lab(tmp_path):
    runs = []
    for name in ("first", "replay"):
        r, junit = _run(tmp_path, name, LAB, "--tcplab-seed", "99")
        assert r.returncode == 0, r.stdout[-3000:]
        runs.append(_properties(junit))
    assert runs[0]["seed"] == runs[1]["seed"] == "99"
    segments = [[ln for ln in p["lost"].splitlines() if not ln.endswith(":")] for p in runs]
    assert segments[0], f"seed 99 lost nothing in this lab: choose a seed that does\n{runs[0]['lost']}"
    assert segments[0] == segments[1]


def test_each_test_gets_its_own_seed_and_a_failure_names_it(tmp_path):
    lab = tmp_path / "lab" / "test_lossy_fail.py"
    lab.parent.mkdir()
    lab.write_text(textwrap.dedent("""
        from tcplab import Netem

        def test_lossy(hosts):
            hosts.impair(both=Netem(loss=10))
            with hosts.capture():
                srv = hosts.server.listen(port=7788)
                hosts.client.connect(srv.address, timeout=60)
                srv.accept(timeout=60)
            assert False, "on purpose"
    """))
    r, junit = _run(tmp_path, "fail", str(lab), cwd=tmp_path / "lab")
    assert r.returncode == 1
    seed = _properties(junit)["seed"]
    assert f"--tcplab-seed {seed}" in r.stdout, r.stdout[-3000:]
    [(nodeid, outcome, _)] = junit_results(junit)
    assert outcome == "failed"
