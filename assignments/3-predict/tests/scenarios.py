"""The scenarios of assignment 3, played by two real kernels (no student code runs here).

Each scenario is a function of the lab's hosts that returns the connection it made.  Both hosts
ACK at once (quickack) and retransmit after 20 ms at the least (rto_min), so every run puts the
same segments on the wire; the wire's drops are exact (the nth segment of a kind)."""
from __future__ import annotations

from tcplab import Drop, until

PORT = 7790
DATA = b"hello"


def _prepare(hosts, drops=()):
    for h in hosts:
        h.quickack()
        h.rto_min(20)
    if drops:
        hosts.impair(drops=list(drops))


def _talk(hosts, *, connect_timeout=5.0):
    """Handshake, 5 bytes from the client, the client closes, the server reads to EOF and closes;
    returns once the server's socket is gone (its FIN acknowledged)."""
    with hosts.capture() as cap:
        server = hosts.server.listen(port=PORT)
        client = hosts.client.connect(server.address, timeout=connect_timeout)
        peer = server.accept()
        client.send(DATA)
        assert peer.recv_exactly(len(DATA)) == DATA
        client.close()
        assert peer.recv_eof() == b""
        peer.close()
        until(lambda: peer.state() == "CLOSED", 10,
              "the server's socket to close")
    return cap.trace.connection(port=PORT)


def data_and_close(hosts):
    _prepare(hosts)
    return _talk(hosts)


def first_syn_lost(hosts):
    _prepare(hosts, [Drop(">", "S")])
    return _talk(hosts)


def final_ack_lost(hosts):
    # the client's pure ACKs: #1 ends the handshake, #2 acknowledges the server's FIN
    _prepare(hosts, [Drop(">", ".", nth=2, payload=False)])
    return _talk(hosts)


SCENARIOS = {"data_and_close": data_and_close, "first_syn_lost": first_syn_lost,
             "final_ack_lost": final_ack_lost}
