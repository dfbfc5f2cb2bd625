"""Three-way handshake (claims F1, H1-H6).

The client's connect() makes its kernel send a SYN with a random initial sequence number x; the
server's kernel answers with SYN+ACK (its own random ISN y, ack x+1); the client confirms with a
pure ACK (seq x+1, ack y+1).  Three segments, no payload.  Numbers in the scripts below are relative
to each side's ISN, as tcpdump and packetdrill print them.

Linux detail the textbook leaves out: the SYN and SYN-ACK carry options (MSS, SACK-permitted,
timestamps, window scale), and the client's socket is ESTABLISHED as soon as it sends the ACK.
"""
import sys

import pytest

from tcplab import HANDSHAKE



@pytest.mark.lab("F1", "H1", "H2", "H3", "H4", points=5)
def test_three_way_handshake(hosts, family, shows):
    with hosts.capture() as cap:
        server = hosts.server.listen(port=7788, family=family)
        client = hosts.client.connect(server.address)
        accepted = server.accept()
        assert client.state() == "ESTABLISHED"
        assert accepted.state() == "ESTABLISHED"
    conn = cap.trace.connection(port=7788)
    conn.expect(HANDSHAKE)
    syn, synack, ack = conn.segments
    # The same facts in absolute numbers, as the seed states them.
    assert synack.ack == (syn.seq + 1) % 2**32
    assert ack.seq == (syn.seq + 1) % 2**32
    assert ack.ack == (synack.seq + 1) % 2**32
    # SYN and SYN-ACK carry Linux's usual option set.
    assert [n for n, _ in syn.options] == ["MSS", "SAckOK", "Timestamp", "NOP", "WScale"]
    # Both captures agree: nothing was lost on a clean wire.
    assert conn.lost() == []
    # the lab that teaches the opening transitions (the state diagram names it on their arrows)
    shows("CLOSED", "SYN_SENT")
    shows("LISTEN", "SYN_RECV")
    shows("SYN_SENT", "ESTABLISHED")
    shows("SYN_RECV", "ESTABLISHED")


@pytest.mark.lab("H5", points=2)
def test_isns_are_random(hosts, family):
    """Eight connections between the same two hosts: every ISN differs, each x != y, and the x
    values are spread over the 32-bit space (a counter would give close, increasing numbers)."""
    with hosts.capture() as cap:
        server = hosts.server.listen(port=7788, family=family)
        for _ in range(8):
            hosts.client.connect(server.address)
            server.accept()
    conns = cap.trace.connections(port=7788)
    assert len(conns) == 8
    xs = [c.isn["client"] for c in conns]
    ys = [c.isn["server"] for c in conns]
    assert len(set(xs)) == 8 and len(set(ys)) == 8
    assert all(x != y for x, y in zip(xs, ys))
    # P(8 uniform 32-bit values fall within a 2**24 range) < 1e-15.
    assert max(xs) - min(xs) > 2**24


@pytest.mark.lab("H6", points=2)
def test_tcpdump_rendering(hosts, family):
    """The exchange printed the way the seed prints it: S x:x, S y:y ack x+1, then . ack 1."""
    with hosts.capture() as cap:
        server = hosts.server.listen(port=7788, family=family)
        hosts.client.connect(server.address)
        server.accept()
    conn = cap.trace.connection(port=7788)
    syn, synack, ack = conn.segments
    x, y = syn.seq, synack.seq
    ip = "IP6" if family == 6 else "IP"
    c, s = f"{hosts.client.addr(family)}.{syn.sport}", f"{hosts.server.addr(family)}.7788"
    lines = conn.tcpdump_lines().splitlines()
    assert lines[0].startswith(f"{ip} {c} > {s}: S {x}:{x}(0) win ")
    assert lines[1].startswith(f"{ip} {s} > {c}: S {y}:{y}(0) ack {(x + 1) % 2**32} win ")
    assert lines[2].startswith(f"{ip} {c} > {s}: . ack 1 win ")
    absolute = conn.tcpdump_lines(absolute=True).splitlines()
    assert absolute[2].startswith(f"{ip} {c} > {s}: . ack {(y + 1) % 2**32} win ")


@pytest.mark.lab("H1", "H2", "H3", "H4", points=3)
def test_handshake_between_programs_we_did_not_write(hosts, family):
    """The same handshake when both ends are ordinary programs: Python's http.server as the server
    and curl as the client.  The fixtures do not depend on tcplab's own socket helpers."""
    addr = hosts.server.addr(family)
    server = hosts.server.popen([sys.executable, "-m", "http.server", "--bind", addr, "8080"])
    hosts.server.wait_listening(8080, family, program=server)
    url = f"http://[{addr}]:8080/" if family == 6 else f"http://{addr}:8080/"
    with hosts.capture() as cap:
        curl = hosts.client.popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", url])
        assert curl.wait(60) == 0, curl.stderr
    assert curl.stdout == "200"
    server.close()
    conn = cap.trace.connection(port=8080)
    conn.expect(HANDSHAKE, complete=False)
    assert any(s.length > 0 for s in conn.segments[3:]), "the HTTP request and reply carry data"


@pytest.mark.lab("H1", "H2", "H3", "R1", points=4)
def test_half_open_states_when_syn_ack_is_lost(hosts, family):
    """Hold the handshake mid-way by dropping exactly the first SYN-ACK on the wire.

    The client stays in SYN_SENT and the server keeps a half-open SYN_RECV entry (Linux shows it as
    a request socket, not yet accept()-able).  About 1 s later both retransmission timers fire
    (the client's SYN timer and the server's SYN-ACK timer), in an order that is a race, so the
    lab states them as "any order"; when the server's SYN-ACK arrives first, the client completes
    the handshake without sending its SYN again (seen on Debian 6.1 under QEMU).  Retransmitted SYNs and SYN-ACKs carry the original numbers."""
    from tcplab import Drop
    imp = hosts.impair(drops=[Drop("<", "S.")])
    with hosts.capture() as cap:
        server = hosts.server.listen(port=7788, family=family)
        client = hosts.client.connect(server.address, wait=False)
        client.wait_state("SYN_SENT")
        assert client.wait_state("SYN_RECV", peer=True) == "SYN_RECV"
        client.wait_connected(timeout=10)
        accepted = server.accept(timeout=10)
        accepted.wait_state("ESTABLISHED")
    assert imp.counters() == {"drop0": 1}
    conn = cap.trace.connection(port=7788)
    conn.expect("""
        > S 0:0(0)
        < S. 0:0(0) ack 1          # dropped on the wire
        any order:
            > S 0:0(0) *           # client's SYN timer: none if the SYN-ACK came back first
            < S. 0:0(0) ack 1 +    # server's SYN-ACK timer, or the answer to the new SYN
            > . 1:1(0) ack 1 +
    """)
    assert [conn.line(s) for s in conn.lost()] == ["< S. 0:0(0) ack 1"]
    assert len({s.seq for s in conn if s.flags == {"SYN"}}) == 1
    assert len({s.seq for s in conn if s.flags == {"SYN", "ACK"}}) == 1


@pytest.mark.lab("H2", "H3", points=3)
def test_server_half_open_until_final_ack(hosts, family):
    """Drop exactly the handshake's final ACK: the client is ESTABLISHED (it sent the ACK), the
    server still SYN_RECV.  The server's SYN-ACK timer re-sends the SYN-ACK, the client answers
    with a new ACK, and only then can the server accept() the connection."""
    from tcplab import Drop
    hosts.impair(drops=[Drop(">", ".", payload=False)])
    with hosts.capture() as cap:
        server = hosts.server.listen(port=7788, family=family)
        client = hosts.client.connect(server.address)
        assert client.state() == "ESTABLISHED"
        assert client.wait_state("SYN_RECV", peer=True) == "SYN_RECV"
        server.accept(timeout=10).wait_state("ESTABLISHED")
    conn = cap.trace.connection(port=7788)
    conn.expect("""
        > S 0:0(0)
        < S. 0:0(0) ack 1
        > . 1:1(0) ack 1           # dropped on the wire
        < S. 0:0(0) ack 1 +        # SYN-ACK retransmitted by the half-open server
        > . 1:1(0) ack 1
    """)
    assert [conn.line(s) for s in conn.lost()] == ["> . 1:1(0) ack 1"]
