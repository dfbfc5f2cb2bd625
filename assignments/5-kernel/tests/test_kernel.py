"""Assignment 5: each script the student completed, graded line by line against the kernel itself.

No student text runs.  Each scenario's template (the starter's script: the given lines) runs on
the kernel with tcplab's scripted peer in record mode; every > line and result the student wrote
is compared with what the kernel really did (tcplab.grading.script_prediction)."""
import pytest

from tcplab import ConfigError
from tcplab.grading.script_prediction import Template, grade, read_prediction
from tcplab.lab.pkt import Failed, Refused, record_script
from tcplab.report.ladder import exchange_files

POINTS = {"passive_open": 3, "lost_segments": 4, "reset_attempts": 3}
HINTS = {
    "passive_open": "the SYN-ACK answers the options the SYN offered; an ACK the kernel can delay, it may",
    "lost_segments": "what RTO does a connection start with, and what if its SYN had to be sent again? (RFC 6298)",
    "reset_attempts": "RFC 5961: which segments end a connection, and which only get an ACK?",
}


@pytest.mark.parametrize("scenario", [
    pytest.param(name, marks=pytest.mark.lab(points=POINTS[name], hint=HINTS[name]), id=name)
    for name in POINTS])
def test_prediction(pkt_config, assignment, submission, scenario, score, tcplab_workdir):
    """<scenario>.pkt, line by line, against what the kernel sends for the template's given lines."""
    name = f"{scenario}.pkt"
    template = Template.load(assignment.path / "starter" / name)
    try:
        prediction = read_prediction(template, (submission / name).read_text(errors="replace"), name)
    except ConfigError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        rec = record_script(template.script, pkt_config, template.asked)
    except (Failed, Refused) as exc:          # the kernel or the machine, never the student
        pytest.skip(f"the scenario's given lines did not run as written on this kernel: {exc}")
    exchange_files(rec.exchange, tcplab_workdir, scenario,
                   f"{name}: what the kernel under test ({pkt_config.local_ip}) did")
    result = grade(template, prediction, rec, tolerance_usecs=pkt_config.tolerance_usecs)
    result.award(score, POINTS[scenario])
    assert result.fraction == 1, f"{name}: {result.right} of {result.total} fields right\n" + result.feedback()
