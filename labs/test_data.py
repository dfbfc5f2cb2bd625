"""Data transfer (claim D1).

Once the connection is established each data segment's seq is where the previous one ended (it
advances by the payload length) and the receiver's ack names the next byte it expects.  Linux sets
PSH on the last segment of each write, so data segments print as ``P.``.

Both hosts set the ``quickack`` route metric so every ACK leaves at once instead of being delayed
and merged into the reply: the exchange is then the same on every run.
"""
import pytest

from tcplab import HANDSHAKE, until



@pytest.mark.lab("D1", "F1", points=4)
def test_seq_advances_by_payload_length(hosts, family):
    for h in hosts:
        h.quickack(True)
    with hosts.capture() as cap:
        server = hosts.server.listen(port=7788, family=family)
        client = hosts.client.connect(server.address)
        peer = server.accept()
        for msg in (b"hello", b"tcp", b"abcdefghij"):
            client.send(msg)
            assert peer.recv_exactly(len(msg)) == msg
        peer.send(b"world!")
        assert client.recv_exactly(6) == b"world!"
        # the client's ACK of "world!" has arrived once the server has nothing unacknowledged
        until(lambda: peer.info().unacked == 0, 5, "the client's ACK of world!")
    conn = cap.trace.connection(port=7788)
    conn.expect(HANDSHAKE + """
        > P. 1:6(5) ack 1          # 5 bytes: seq 1..6
        < . 1:1(0) ack 6           # next byte expected: 6
        > P. 6:9(3) ack 1
        < . 1:1(0) ack 9
        > P. 9:19(10) ack 1
        < . 1:1(0) ack 19
        < P. 1:7(6) ack 19         # the other direction counts from its own ISN
        > . 19:19(0) ack 7
    """)
    data = [s for s in conn if s.length]
    assert b"".join(s.payload for s in data if conn.side(s) == "client") == b"hellotcpabcdefghij"
