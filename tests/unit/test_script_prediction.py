"""Assignment 5's reader and grader on recordings made here by hand (the kernel's part is
tests/integration/test_assignments.py): what a prediction may hold, and how each line is paired
with a segment and scored."""
from pathlib import Path

import pytest

from tcplab import ConfigError
from tcplab.grading.script_prediction import Template, grade, read_prediction, read_script
from tcplab.lab.pkt import Recording
from tcplab.wire.tun import Frame

TEMPLATE = """\
// given lines, absolute times
`sysctl -q net.ipv4.tcp_rmem="4096 131072 6291456"`
     0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
     0 bind(3, ..., ...) = 0
     0 listen(3, 1) = 0
   0.1 < S 0:0(0) win 65535 <mss 1460>
  0.11 < . 1:1(0) ack 1 win 65535
  0.11 accept(3, ..., ...) = 4
   0.2 < P. 1:11(10) ack 1 win 65535
   0.2 read(4, ..., 100) = ?
"""
SYNACK = "    +0 > S. 0:0(0) ack 1 <mss 1460>\n"
ACK = "    +0 > . 1:1(0) ack 11\n"
RIGHT = (TEMPLATE.replace("win 65535 <mss 1460>\n", "win 65535 <mss 1460>\n" + SYNACK)
         .replace("win 65535\n   0.2 read(4, ..., 100) = ?", "win 65535\n" + ACK + "   0.2 read(4, ..., 100) = 10"))


@pytest.fixture
def template(tmp_path) -> Template:
    path = tmp_path / "t.pkt"
    path.write_text(TEMPLATE)
    return Template.load(path)


def frame(t, flags, seq, ack, options=()):
    return Frame(t, 4, "192.168.0.1", "192.0.2.1", 8080, 40000, 1000 + seq, ack, frozenset(flags), 64240, 0,
                 list(options), b"")


# what the kernel did: its SYN-ACK at 0.1001 after line 6, its ACK at 0.2002 after line 9; read() = 10
REC = Recording(exchange=[(0.1001, ">", frame(1779.1001, {"SYN", "ACK"}, 0, 1, [("mss", 1460)]), 6, 0, 1),
                          (0.2002, ">", frame(1779.2002, {"ACK"}, 1, 11), 9, 1, 11)],
                started={3: 0.0, 4: 0.0, 5: 0.0, 6: 0.1, 7: 0.11, 8: 0.11, 9: 0.2, 10: 0.2},
                results={10: (10, "")})


def test_a_template_names_what_is_asked_and_has_no_kernel_lines(template, tmp_path):
    assert template.asked == {10} and len(template.given) == 8
    bad = tmp_path / "bad.pkt"
    bad.write_text(RIGHT)
    with pytest.raises(ConfigError, match=r"bad\.pkt:7: a template has no > lines"):
        Template.load(bad)


def test_the_reference_scores_every_field(template):
    r = grade(template, read_prediction(template, RIGHT, "t.pkt"), REC, tolerance_usecs=50_000)
    assert (r.fraction, r.right, r.total) == (1.0, 11, 11), r.feedback()
    assert "line 7: > S. 0:0(0) ack 1 <mss 1460>   right" in r.feedback()


def test_a_missing_line_costs_one_segment_not_the_rest(template):
    text = RIGHT.replace(SYNACK, "")
    r = grade(template, read_prediction(template, text, "t.pkt"), REC, tolerance_usecs=50_000)
    assert (r.right, r.total) == (6, 11), r.feedback()
    assert "after line 6: the kernel sent > S. 0:0(0) ack 1 win 64240 <mss 1460> at 0.100 s; your prediction " \
           "has no line for it" in r.feedback()
    extra = RIGHT.replace(ACK, ACK + "    +0 > F. 1:1(0) ack 11\n")
    r = grade(template, read_prediction(template, extra, "t.pkt"), REC, tolerance_usecs=50_000)
    assert (r.right, r.total) == (11, 16) and "line 12: > F. 1:1(0) ack 11\n    the kernel sent no such segment" \
        in r.feedback(), r.feedback()


@pytest.mark.parametrize("line, wrong", [
    ("    +0 > S. 0:0(0) ack 1 <...>\n", "wrong: options (<...> predicts no options: write them)"),
    ("    +0 > S. 0:0(0) ack 1\n", "wrong: options"),
    ("    * > S. 0:0(0) ack 1 <mss 1460>\n", "wrong: time (write a time: * and ranges predict none)"),
    ("    +.2 > S. 0:0(0) ack 1 <mss 1460>\n", "(you said 0.300 s)\n    wrong: time"),
    ("    +0 > S 0:0(0) <mss 1460>\n", "wrong: flags, ack"),
    ("    +0 > S. 5:5(0) ack 2 <mss 1460>\n", "wrong: seq, ack"),
])
def test_each_field_is_its_own_point(template, line, wrong):
    r = grade(template, read_prediction(template, RIGHT.replace(SYNACK, line), "t.pkt"), REC, tolerance_usecs=50_000)
    assert r.right == 11 - wrong.split("wrong: ")[1].split(" (")[0].count(",") - 1, r.feedback()
    assert wrong in r.feedback()


def test_a_time_is_right_within_the_tolerance_or_an_eighth_of_the_gap(template):
    late = RIGHT.replace(ACK, "   +.04 > . 1:1(0) ack 11\n")        # 40 ms off, 50 ms allowed
    assert grade(template, read_prediction(template, late, "t.pkt"), REC, tolerance_usecs=50_000).fraction == 1
    assert grade(template, read_prediction(template, late, "t.pkt"), REC, tolerance_usecs=4_000).right == 10


def test_results_right_wrong_and_unanswered(template):
    pred = read_prediction(template, RIGHT.replace("= 10", "= -1 EAGAIN"), "t.pkt")
    assert pred.results == {10: (-1, "EAGAIN")}
    r = grade(template, pred, REC, tolerance_usecs=50_000)
    assert r.right == 10 and "line 12: 0.2 read(4, ..., 100) = -1 EAGAIN   wrong: the kernel returned 10" in r.feedback()
    r = grade(template, read_prediction(template, TEMPLATE, "t.pkt"), REC, tolerance_usecs=50_000)
    assert (r.right, r.total) == (0, 11) and "= ?   not answered; the kernel returned 10" in r.feedback()


@pytest.mark.parametrize("change, message", [
    (lambda t: t + "  0.3 `touch /tmp/tcplab-pwned`\n", r"line 13: shell commands \(`...`\) are not allowed"),
    (lambda t: "`id`\n" + t, r"line 1: shell commands"),
    (lambda t: t + "  0.3 %{ import os; os.system('id') }%\n", r"line 13: Python blocks"),
    (lambda t: "--tolerance_usecs=1000000\n" + t, r"line 1: option lines \(--name=value\) are not allowed"),
    (lambda t: "#include \"/etc/shadow\"\n" + t, r"line 1: includes are not allowed"),
    (lambda t: t.replace("0.2 < P. 1:11(10)", "0.2 < P. 1:101(100)"), r"line 10: this line is given and must stay as "
                                                                       r"the template has it: '0.2 < P. 1:11\(10\)"),
    (lambda t: t + "  0.3 < R 11:11(0) win 0\n", r"line 13: '0.3 < R 11:11\(0\) win 0' is not in the template"),
    (lambda t: t.replace("     0 listen(3, 1) = 0\n", ""), r"line 5: this line is given and must stay as the template has it: '0 listen"),
    (lambda t: t.replace("= 10", "= 10 // ok") + "x" * 70_000, r"is 68 KiB: a prediction is at most 64 KiB"),
    (lambda t: t + "// \n" * 500, r"lines: a prediction is at most 400"),
    (lambda t: t.replace("   0.2 read(4, ..., 100) = 10\n", ""), r"the template's line 10 is missing: '0.2 read"),
    (lambda t: t + "  0.3 > S. 0:0(0) ack 1 <mss 1460,sackOK>\n", r"line 13: TCP options are not padded correctly"),
    (lambda t: t.replace("0.2 read(4, ..., 100) = 10", "0.2 read(4, ..., 100) = 10 +"), r"line 12: cannot read"),
    (lambda t: t + "  0.3 socket(" + "[" * 20000 + "]" * 20000 + ") = 3\n", r"nested thousands deep"),
])
def test_a_hostile_or_broken_prediction_is_refused_by_line(template, change, message):
    with pytest.raises(ConfigError, match=message):
        read_prediction(template, change(RIGHT), "t.pkt")


def test_the_templates_own_shell_line_is_given_and_a_students_machine_may_run_any():
    with pytest.raises(ConfigError, match="shell commands"):
        read_script(RIGHT, "t.pkt")                       # no template: no shell line at all
    script, asked = read_script(RIGHT, "t.pkt", commands=None)
    assert script.init_commands and not asked


def test_the_assignments_templates_load(tmp_path):
    folder = Path(__file__).resolve().parents[2] / "assignments" / "5-kernel"
    for name in ("passive_open.pkt", "lost_segments.pkt", "reset_attempts.pkt"):
        t = Template.load(folder / "starter" / name)
        assert t.asked and all(ev.time.kind == "abs" for ev in t.given), name
        read_prediction(t, (folder / "reference" / name).read_text(), name)
