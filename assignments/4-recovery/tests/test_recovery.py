"""Assignment 4: which recovery repairs each loss, and the ssthresh it leaves, graded against the
kernel's own record of two real kernels playing each scenario.

No student code runs: the answers are text.  The client's kernel counts its recoveries
(TCPSackRecovery, TCPLossProbes, TCPTimeouts: each host is a fresh namespace) and TCP_INFO gives
its ssthresh once every byte is acknowledged; the feedback shows the time-sequence graph of the
transfer with the kernel's cwnd and ssthresh under it."""
import pytest

from tcplab.grading.predict import parse_answer
from scenarios import SCENARIOS
from tcplab import ConfigError

HINTS = {
    "middle_loss": "segments after the hole still arrive: what do their ACKs tell the sender?",
    "cubic_middle_loss": "the same loss; CUBIC multiplies by 0.7 (717/1024 in the kernel) where Reno halves",
    "tail_loss": "nothing is sent after the lost segment, so no ACK reports the hole; which timer fires first?",
    "whole_flight_lost": "no ACK at all comes back, and this sender sends no probes",
}


@pytest.mark.parametrize("scenario", [
    pytest.param(name, marks=pytest.mark.lab(points=3, hint=HINTS[name]), id=name) for name in SCENARIOS])
def test_recovery(hosts, submission, scenario, score):
    """The answer in <scenario>.txt against the scenario played by two kernels: 1 point for the
    recovery, 2 for the ssthresh."""
    text = (submission / f"{scenario}.txt").read_text(errors="replace")
    truth = SCENARIOS[scenario](hosts)      # played first: the feedback shows it either way
    try:
        answer = parse_answer(f"{scenario}.txt", text)
    except ConfigError as exc:
        pytest.fail(f"{exc}\n{truth.describe()}", pytrace=False)
    assert len(truth.kinds) == 1, "the scenario did not run as designed (this is not your answer's fault; " \
        f"grade again): {truth.describe()}"
    right_kind = answer.recovery == truth.kinds[0]
    right_ssthresh = answer.ssthresh == truth.ssthresh
    wrote = "none" if answer.ssthresh is None else answer.ssthresh
    actual = "none" if truth.ssthresh is None else truth.ssthresh
    if right_kind != right_ssthresh:
        score.partial(1 if right_kind else 2, "the recovery is right" if right_kind else "the ssthresh is right")
    assert right_kind and right_ssthresh, (
        f"{scenario}.txt: you wrote '{answer.recovery} {wrote}'; the kernel did '{truth.kinds[0]} {actual}'\n"
        + ("" if right_kind else f"- the loss was repaired by {truth.kinds[0].replace('_', ' ')}, "
           f"not {answer.recovery.replace('_', ' ')}\n")
        + ("" if right_ssthresh else f"- ssthresh after it: {actual}, not {wrote}\n")
        + truth.describe())
