"""The trace model on pcaps written by the test itself."""
import pytest

from tcplab.notation import flags_from_letters, letters
from tcplab.observe.trace import Trace
from tests.unit.pcapgen import C, S, X, Y, handshake_and_close, seg, write


@pytest.fixture
def conn(tmp_path):
    return Trace.from_pcap(write(tmp_path / "t.pcap", handshake_and_close())).connection(port=7788)


def test_orientation_and_isns(conn):
    assert conn.client == (C, 3337) and conn.server == (S, 7788)
    assert conn.isn == {"client": X, "server": Y}


def test_packetdrill_notation(conn):
    assert conn.script().splitlines() == [
        "> S 0:0(0)", "< S. 0:0(0) ack 1", "> . 1:1(0) ack 1", "> P. 1:6(5) ack 1",
        "< . 1:1(0) ack 6", "> F. 6:6(0) ack 1", "< F. 1:1(0) ack 7", "> . 7:7(0) ack 2"]


def test_options_and_window_rendering(conn):
    assert conn.line(conn.segments[0], win=True, options=True) == \
        "> S 0:0(0) win 64240 <mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7>"


def test_tcpdump_relative_is_like_the_seed(conn):
    lines = conn.tcpdump_lines().splitlines()
    assert lines[0].startswith(f"IP {C}.3337 > {S}.7788: S {X}:{X}(0) win 64240 <mss 1460")
    assert lines[1] == f"IP {S}.7788 > {C}.3337: S {Y}:{Y}(0) ack {X + 1} win 65160"
    assert lines[2] == f"IP {C}.3337 > {S}.7788: . ack 1 win 502"
    assert lines[3] == f"IP {C}.3337 > {S}.7788: P 1:6(5) ack 1 win 502"
    assert lines[5] == f"IP {C}.3337 > {S}.7788: F 6:6(0) ack 1 win 502"


def test_tcpdump_absolute(conn):
    lines = conn.tcpdump_lines(absolute=True).splitlines()
    assert lines[2] == f"IP {C}.3337 > {S}.7788: . ack {Y + 1} win 502"
    assert lines[3] == f"IP {C}.3337 > {S}.7788: P {X + 1}:{X + 6}(5) ack {Y + 1} win 502"


def test_sequence_wraps_modulo_2_32(tmp_path):
    x = 2**32 - 2
    pk = [seg(C, S, "S", x, t=1), seg(S, C, "SA", 5, x + 1, t=2), seg(C, S, "PA", x + 1, 6, b"abcd", t=3)]
    conn = Trace.from_pcap(write(tmp_path / "w.pcap", pk)).connection(port=7788)
    assert conn.line(conn.segments[1]) == "< S. 0:0(0) ack 1"
    assert conn.line(conn.segments[2]) == "> P. 1:5(4) ack 1"
    assert conn.segments[2].end == 3  # absolute end wrapped past 2**32


def test_connections_grouped_per_four_tuple(tmp_path):
    pk = handshake_and_close(10) + [seg(C, S, "S", 42, t=11, sport=4000), seg(S, C, "RA", 0, 43, t=11.1, sport=4000)]
    trace = Trace.from_pcap(write(tmp_path / "m.pcap", pk))
    assert len(trace.connections(port=7788)) == 2
    with pytest.raises(Exception, match="exactly one connection on port 7788, found 2"):
        trace.connection(port=7788)
    assert trace.connection(port=7788, index=1).script() == "> S 0:0(0)\n< R. 0:0(0) ack 1"


def test_loss_is_what_the_sender_sent_and_the_receiver_never_saw(tmp_path):
    pk = handshake_and_close()
    client_view = pk
    server_view = [p for i, p in enumerate(pk) if i != 5]  # the client's FIN vanished on the wire
    trace = Trace.from_pcaps({"client": write(tmp_path / "c.pcap", client_view),
                              "server": write(tmp_path / "s.pcap", server_view)},
                             {"client": {C}, "server": {S}})
    conn = trace.connection(port=7788)
    assert [conn.line(s) for s in conn.lost()] == ["> F. 6:6(0) ack 1"]
    assert "--x  |  << lost on the wire" in conn.ladder().splitlines()[6]
    assert repr(conn.lost()) == "[#6 " + f"{conn.lost()[0].time - conn.segments[0].time:.3f}s" + " > F. 6:6(0) ack 1]"


def test_retransmitted_copy_that_arrived_is_the_later_one(tmp_path):
    first = seg(C, S, "S", X, t=1.0)
    again = seg(C, S, "S", X, t=2.0)
    trace = Trace.from_pcaps({"client": write(tmp_path / "c.pcap", [first, again]),
                              "server": write(tmp_path / "s.pcap", [seg(C, S, "S", X, t=2.0001)])},
                             {"client": {C}, "server": {S}})
    conn = trace.connection(port=7788)
    assert [s.time for s in conn.lost()] == [1.0]


def test_flag_letters_round_trip():
    assert letters(flags_from_letters("S.")) == "S."
    assert letters(flags_from_letters(".PF")) == "FP."
    assert letters(flags_from_letters("R.")) == "R."
    with pytest.raises(ValueError, match="unknown TCP flag letter"):
        flags_from_letters("SX")


def test_ladder_command_draws_a_pcap(tmp_path, capsys):
    from tcplab.cli import main
    from .pcapgen import handshake_and_close, write
    path = write(tmp_path / "x.pcap", handshake_and_close())
    assert main(["ladder", str(path), "--svg", str(tmp_path / "x.svg")]) == 0
    out = capsys.readouterr().out
    assert "|---- S 0:0(0)" in out and "|<--- S. 0:0(0) ack 1" in out and f"written: {tmp_path / 'x.svg'}" in out
    import xml.etree.ElementTree as ET
    texts = [t.text for t in ET.parse(tmp_path / "x.svg").iter("{http://www.w3.org/2000/svg}text")
             if t.get("class") == "tcplab-seg"]
    assert texts[:3] == ["S 0:0(0)", "S. 0:0(0) ack 1", ". 1:1(0) ack 1"] and len(texts) == 8


def test_ladder_command_errors(tmp_path, capsys):
    from tcplab.cli import main
    assert main(["ladder", str(tmp_path / "none.pcap")]) == 2
    (tmp_path / "bad.pcap").write_bytes(b"not a pcap")
    assert main(["ladder", str(tmp_path / "bad.pcap")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_states_of_one_side_are_complete_or_an_error(tmp_path):
    """conn.states(side) raises only for a gap in that side's record; conn.states() for either."""
    from tcplab import CaptureIncomplete
    from tcplab.observe.kernel import KernelRecord
    from tcplab.observe.states import StateChange
    pk = handshake_and_close()
    trace = Trace.from_pcaps({"client": write(tmp_path / "c.pcap", pk), "server": write(tmp_path / "s.pcap", pk)},
                             {"client": {C}, "server": {S}})
    conn = trace.connection(port=7788)
    record = KernelRecord()
    c, s = conn.client, conn.server
    record.changes = [StateChange(1.0, "CLOSED", "SYN_SENT", 4, c, s, 1),
                      StateChange(2.0, "FIN_WAIT_1", "FIN_WAIT_2", 4, c, s, 1),     # a gap: ESTABLISHED... missing
                      StateChange(1.5, "SYN_RECV", "ESTABLISHED", 4, s, c, 2)]
    record.changes.sort(key=lambda e: e.time)
    conn.kernel = record
    assert [str(e) for e in conn.states("server")] == ["SYN_RECV -> ESTABLISHED"]
    with pytest.raises(CaptureIncomplete, match="CLOSED -> SYN_SENT then FIN_WAIT_1 -> FIN_WAIT_2"):
        conn.states("client")
    with pytest.raises(CaptureIncomplete):
        conn.states()
    assert {side for _, side, _ in conn.state_marks()} == {"server"}
