import pytest


@pytest.mark.lab(points=1, hint="print ok")
def test_prints_ok(hosts, student):
    outcome = student(hosts.client).run(["run.py"])
    assert outcome.ok and outcome.stdout.strip() == "ok", outcome.feedback()
