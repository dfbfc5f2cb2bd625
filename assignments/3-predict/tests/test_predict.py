"""Assignment 3: the student's predicted exchanges, graded field by field against two real kernels.

No student code runs: the predictions are text, parsed by the grader.  Each scenario is played on
the lab's wire (tests/scenarios.py) and every predicted line is compared with the segment really
sent at that place: direction, flags, seq, length and ack, with credit for every right field."""
import pytest

from scenarios import SCENARIOS
from tcplab import ConfigError
from tcplab.grading.predict import grade_prediction

POINTS = {"data_and_close": 3, "first_syn_lost": 3, "final_ack_lost": 4}
HINTS = {
    "data_and_close": "every segment that carries data or a FIN is acknowledged; the FIN counts as one byte",
    "first_syn_lost": "a lost SYN is sent again with the same sequence number",
    "final_ack_lost": "the server never learns that its FIN arrived: what does it do, and who answers?",
}


@pytest.mark.parametrize("scenario", [
    pytest.param(name, marks=pytest.mark.lab(points=POINTS[name], hint=HINTS[name]), id=name)
    for name in SCENARIOS])
def test_prediction(hosts, submission, scenario, score):
    """The prediction in <scenario>.txt, against the scenario played by two kernels."""
    text = (submission / f"{scenario}.txt").read_text(errors="replace")
    conn = SCENARIOS[scenario](hosts)
    try:
        result = grade_prediction(text, conn)
    except ConfigError as exc:
        pytest.fail(f"{scenario}.txt: {exc}", pytrace=False)
    result.award(score, POINTS[scenario])
    assert result.fraction == 1, f"{scenario}.txt: {result.right} of {result.total} fields right\n" + \
        result.feedback() + "\n\nwhat the kernels did:\n" + conn.ladder()
