"""The expectation language: parsing, matching, and the failure text users see (pinned)."""
import pytest

from tcplab.errors import ConfigError, ExpectationFailed
from tcplab.observe.expect import Expectation
from tcplab.observe.trace import Trace
from tests.unit.pcapgen import C, S, X, Y, handshake_and_close, seg, write

HANDSHAKE = """
    > S 0:0(0)
    < S. 0:0(0) ack 1
    > . 1:1(0) ack 1
"""


def conn_of(tmp_path, packets):
    return Trace.from_pcap(write(tmp_path / "x.pcap", packets)).connection(port=7788)


def test_exact_match_and_complete(tmp_path):
    conn = conn_of(tmp_path, handshake_and_close())
    conn.expect(HANDSHAKE, complete=False)
    with pytest.raises(ExpectationFailed, match="segment 4 .* is unexpected"):
        conn.expect(HANDSHAKE)


def test_omitted_fields_are_not_checked(tmp_path):
    conn = conn_of(tmp_path, handshake_and_close()[:4])
    conn.expect("> S\n< S.\n> .\n> P. 1:6(5)")


def test_options_checked_only_when_written(tmp_path):
    conn = conn_of(tmp_path, handshake_and_close()[:1])
    conn.expect("> S 0:0(0) <mss 1460,sackOK,TS,nop,wscale 7>")
    with pytest.raises(ExpectationFailed, match=r"options expected <mss 1400"):
        conn.expect("> S 0:0(0) <mss 1400,sackOK,TS,nop,wscale 7>")


def test_retransmissions_fold_with_plus(tmp_path):
    pk = [seg(C, S, "S", X, t=1), seg(C, S, "S", X, t=2), seg(C, S, "S", X, t=4),
          seg(S, C, "SA", Y, X + 1, t=4.1), seg(C, S, "A", X + 1, Y + 1, t=4.2)]
    conn = conn_of(tmp_path, pk)
    conn.expect("> S 0:0(0) +\n< S. 0:0(0) ack 1\n> . 1:1(0) ack 1")
    conn.expect("> S 0:0(0) {3}\n< S. 0:0(0) ack 1\n> . 1:1(0) ack 1")
    with pytest.raises(ExpectationFailed):
        conn.expect("> S 0:0(0) {2}\n< S. 0:0(0) ack 1\n> . 1:1(0) ack 1")


def test_any_order_block(tmp_path):
    pk = [seg(C, S, "S", X, t=1), seg(S, C, "SA", Y, X + 1, t=2), seg(C, S, "S", X, t=3),
          seg(C, S, "A", X + 1, Y + 1, t=3.1), seg(S, C, "SA", Y, X + 1, t=3.2), seg(C, S, "A", X + 1, Y + 1, t=3.3)]
    conn = conn_of(tmp_path, pk)
    conn.expect("""
        > S 0:0(0)
        < S. 0:0(0) ack 1
        any order:
            > S 0:0(0) +
            < S. 0:0(0) ack 1 +
            > . 1:1(0) ack 1 +
    """)


def test_either_or(tmp_path):
    three = handshake_and_close()
    conn = conn_of(tmp_path, three[:5] + three[5:])
    conn.expect(HANDSHAKE + """
        > P. 1:6(5) ack 1
        < . 1:1(0) ack 6
        > F. 6:6(0) ack 1
        either:
            < . 1:1(0) ack 7
            < F. 1:1(0) ack 7
        or:
            < F. 1:1(0) ack 7
        > . 7:7(0) ack 2
    """)


@pytest.mark.parametrize("script, message", [
    ("> X 0:0(0)", "unknown TCP flag letter"),
    ("> S 0:1(0)", r"end must be seq \+ len = 0"),
    ("> S 0:0(0) ack 5", "add '.'"),
    ("S 0:0(0)", "cannot read"),
    ("> S <foo>", "unknown TCP option 'foo'"),
    ("either:\n    > S", "needs at least one 'or:'"),
    ("sometimes:\n    > S", "unknown block"),
    ("", "is empty"),
    ("> S {0}", "is empty"),
])
def test_bad_scripts_name_the_fix(script, message):
    with pytest.raises(ConfigError, match=message):
        Expectation.parse(script)


def test_failure_text_is_pinned(tmp_path):
    """The exact report a student sees: summary, expected vs actual, ladder, script, pcap."""
    pk = handshake_and_close()[:2] + [seg(C, S, "RA", X + 1, Y + 1, t=100.002)]
    path = write(tmp_path / "x.pcap", pk)
    conn = Trace.from_pcap(path).connection(port=7788)
    with pytest.raises(ExpectationFailed) as e:
        conn.expect(HANDSHAKE)
    assert str(e.value) == f"""\
segment 3 (client > server) differs: flags expected "." but saw "R."
  expected: > . 1:1(0) ack 1
  actual:   > R. 1:1(0) ack 1
               client 198.18.0.1:3337            server 198.18.0.2:7788
     1   0.000s |---- S 0:0(0)                 ---->|
     2   0.001s |<--- S. 0:0(0) ack 1          -----|
     3   0.002s |---- R. 1:1(0) ack 1          ---->|  << expected > . 1:1(0) ack 1
  expected exchange:
    > S 0:0(0)
    < S. 0:0(0) ack 1
    > . 1:1(0) ack 1
  capture: {path}"""


def test_missing_segment_text_is_pinned(tmp_path):
    path = write(tmp_path / "x.pcap", handshake_and_close()[:2])
    conn = Trace.from_pcap(path).connection(port=7788)
    with pytest.raises(ExpectationFailed) as e:
        conn.expect(HANDSHAKE)
    text = str(e.value).splitlines()
    assert text[:3] == ["segment 3 is missing: the exchange ended after 2 segment(s)",
                        "  expected: > . 1:1(0) ack 1", "  actual:   (no segment)"]
    assert text[6].strip() == "(no more segments)                    << expected > . 1:1(0) ack 1"


def test_several_field_differences_are_all_named(tmp_path):
    pk = handshake_and_close()[:2] + [seg(C, S, "A", X + 2, Y + 3, t=100.002)]
    conn = conn_of(tmp_path, pk)
    with pytest.raises(ExpectationFailed, match=r"seq expected 1 but saw 2; ack expected 1 but saw 3"):
        conn.expect(HANDSHAKE)


def test_an_error_names_the_scripts_line_and_its_text():
    with pytest.raises(ConfigError) as e:
        Expectation.parse("""
            > S 0:0(0)
            < S. 0:0(0) ack 1
            > Q 1:1(0) ack 1
        """)
    assert str(e.value).startswith("expected exchange, line 4 '> Q 1:1(0) ack 1': unknown TCP flag letter(s) 'Q'")


@pytest.mark.parametrize("script", [
    """
        > S 0:0(0)
        < S. 0:0(0) ack 1
        > . 1:1(0) ack 1
""" + "> P. 1:6(5) ack 1",                                         # indented piece + flat line
    "> S 0:0(0)\n" + """
            < S. 0:0(0) ack 1
    > . 1:1(0) ack 1
        > P. 1:6(5) ack 1
    """,                                                           # mixed indentation
])
def test_concatenated_scripts_at_any_indentation_are_one_flat_list(script):
    root = Expectation.parse(script).root
    assert [s.render() for s in root.items] == ["> S 0:0(0)", "< S. 0:0(0) ack 1", "> . 1:1(0) ack 1",
                                                "> P. 1:6(5) ack 1"]


def test_indentation_still_delimits_blocks_after_a_less_indented_piece():
    script = "> S 0:0(0)\n" + """
        any order:
            < S. 0:0(0) ack 1 +
            > S 0:0(0) *
        > . 1:1(0) ack 1
    """
    root = Expectation.parse(script).root
    assert [type(x).__name__ for x in root.items] == ["Spec", "AnyOrder", "Spec"]
    assert len(root.items[1].specs) == 2
