"""Resets (claim R2).

RST aborts a connection.  A SYN to a port where nobody listens is answered with RST+ACK whose ack
acknowledges the SYN (ISN+1) and whose seq is 0; an abortive close (SO_LINGER on, timeout 0)
sends RST instead of FIN and skips TIME_WAIT entirely.
"""
import pytest

from tcplab import HANDSHAKE, Unsupported


@pytest.mark.lab("R2", points=3)
def test_syn_to_closed_port_gets_rst(hosts, family, shows):
    with hosts.capture() as cap:
        with pytest.raises(ConnectionRefusedError):
            hosts.client.connect((hosts.server.addr(family), 9), timeout=5)
    conn = cap.trace.connection(port=9)
    conn.expect("""
        > S 0:0(0)
        < R. 0:0(0) ack 1          # seq 0 (nothing to continue), ack = ISN+1
    """)
    rst = conn.segments[1]
    assert rst.seq == 0 and rst.win == 0
    try:
        path = conn.states("client").path()
    except Unsupported:      # no state timeline here: the segments alone make this lab
        return
    assert path == ["CLOSED", "SYN_SENT", "CLOSED"]
    shows("SYN_SENT", "CLOSED", on="RST")


@pytest.mark.lab("R2", points=3)
def test_abortive_close_sends_rst(hosts, family):
    with hosts.capture() as cap:
        server = hosts.server.listen(port=7788, family=family)
        client = hosts.client.connect(server.address)
        peer = server.accept()
        client.abort()
        assert client.state() == "CLOSED"  # no TIME_WAIT
        with pytest.raises(ConnectionResetError):
            peer.recv_exactly(1)
    cap.trace.connection(port=7788).expect(HANDSHAKE + """
        > R. 1:1(0) ack 1          # instead of FIN: SO_LINGER {on, 0 s}
    """)
