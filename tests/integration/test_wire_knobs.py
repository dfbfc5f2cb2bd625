"""Every knob of Netem, run for real on every backend that claims it, measured on the wire.

netem runs where the kernel has sch_netem (CI's VM); the nftables backend (loss in the bridge,
rate in a tbf, the rest in the delay line) runs everywhere, this kernel included.  Bounds on
counts are z=5 binomial intervals; bounds on times are lower bounds from the spec, plus upper
bounds loose enough for a busy machine (what the delay line adds at most is measured by
bench/wire.py, not asserted here).
"""
import socket

import pytest

from tcplab import Netem
from tcplab.errors import Unsupported
from tcplab.wire.impair import probe_netem

from .test_impair import binomial_bounds

BACKENDS = ["netem", "nft"]
N = 1000
SO_RCVBUFFORCE = 33


def _backend(name):
    if name == "netem":
        ok, why = probe_netem()
        if not ok:
            raise Unsupported(f"netem backend: {why}")
    return name


def _udp_burst(hosts, n):
    """n UDP datagrams client -> server through the kernels, back to back (each names its
    index); returns the indices in the order the server's socket received them."""
    srv = hosts.server.socket(4, socket.SOCK_DGRAM)
    # room for the whole burst (SO_RCVBUFFORCE: the namespace's rmem_max is read-only), so the
    # only losses are the wire's
    srv.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    srv.bind((hosts.server.addr(4), 9999))
    srv.settimeout(2.0)
    cli = hosts.client.socket(4, socket.SOCK_DGRAM)
    for i in range(n):
        cli.sendto(b"%06d" % i + b"x" * 200, (hosts.server.addr(4), 9999))
    got = []
    try:
        while True:
            got.append(int(srv.recv(2048)[:6]))
    except socket.timeout:
        pass
    return got


def _one_way(cap):
    """Per TCP segment captured at both ends: (sent at, arrived at), in the order sent."""
    conn = cap.trace.connection(port=7788)
    arrived = {s.key(): s.time for s in conn.received}
    return conn, [(s, arrived[s.key()] - s.time) for s in conn if s.key() in arrived]


@pytest.mark.parametrize("backend", BACKENDS)
def test_delay_each_way_makes_the_handshake_rtt(hosts, backend):
    """25 ms each way: the SYN arrives 25 ms after it left, the SYN-ACK too, the client's
    connect() sees a 50 ms round trip."""
    hosts.impair(both=Netem(delay=25), backend=_backend(backend))
    with hosts.capture() as cap:
        srv = hosts.server.listen(7788)
        hosts.client.connect(srv.address)
        srv.accept()
    conn, delays = _one_way(cap)
    syn, synack = conn.segments[0], conn.segments[1]
    one_way = dict((s.key(), d) for s, d in delays)
    assert 0.025 <= one_way[syn.key()] < 0.060, one_way[syn.key()]
    assert 0.025 <= one_way[synack.key()] < 0.060, one_way[synack.key()]
    rtt = next(s for s in conn.received if s.flags == {"SYN", "ACK"}).time - syn.time
    assert 0.050 <= rtt < 0.100, f"handshake RTT {rtt * 1000:.1f} ms with 25 ms each way"


@pytest.mark.parametrize("backend", BACKENDS)
def test_jitter_spreads_the_delay_and_reorders(hosts, backend):
    """delay 20 ms, jitter 10 ms: one-way delays spread over most of 10..30 ms, and frames sent
    back to back overtake each other, as with netem."""
    hosts.impair(c2s=Netem(delay=20, jitter=10), backend=_backend(backend))
    with hosts.capture() as cap:
        got = _udp_burst(hosts, 200)
    assert sorted(got) == list(range(200)), "jitter alone must not lose or duplicate"
    inversions = sum(1 for a, b in zip(got, got[1:]) if b < a)
    assert inversions >= 10, f"only {inversions} reorderings among 200 frames with 10 ms of jitter"
    sent = {p.load[:6]: float(p.time) for p in cap.packets["client"] if p.haslayer("UDP")}
    recv = {p.load[:6]: float(p.time) for p in cap.packets["server"] if p.haslayer("UDP")}
    d = sorted(recv[k] - sent[k] for k in sent)
    p10, p90 = d[len(d) // 10], d[-len(d) // 10]
    # uniform over 10..30 ms: 12 and 28 ms at the 10th and 90th percentiles; a busy relay adds
    # to both ends, never takes away
    assert d[0] >= 0.0099 and p90 - p10 >= 0.010 and d[-1] < 0.080, \
        f"one-way delays {d[0] * 1000:.1f} .. {p10 * 1000:.1f} (p10) .. {p90 * 1000:.1f} (p90) .. {d[-1] * 1000:.1f} ms"


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicate_copies_frames(hosts, backend):
    hosts.impair(c2s=Netem(duplicate=20), backend=_backend(backend))
    got = _udp_burst(hosts, N)
    extra = len(got) - len(set(got))
    lo, hi = binomial_bounds(N, 0.20)
    assert set(got) == set(range(N)) and lo <= extra <= hi, f"{extra} duplicates of {N}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_reorder_sends_some_frames_without_the_delay(hosts, backend):
    """reorder 25 % with a 20 ms delay: a quarter of the frames skip the delay and overtake the
    ones sent before them."""
    hosts.impair(c2s=Netem(delay=20, reorder=25), backend=_backend(backend))
    with hosts.capture() as cap:
        got = _udp_burst(hosts, 400)
    assert sorted(got) == list(range(400))
    sent = {p.load[:6]: float(p.time) for p in cap.packets["client"] if p.haslayer("UDP")}
    recv = {p.load[:6]: float(p.time) for p in cap.packets["server"] if p.haslayer("UDP")}
    early = sum(1 for k in sent if recv[k] - sent[k] < 0.010)
    # netem's reorder needs a queue to jump (the first frame and any sent to an empty queue go
    # at once on netem), so the bounds are wide on the low side
    lo, hi = binomial_bounds(400, 0.25)
    assert lo * 0.8 <= early <= hi, f"{early} of 400 frames skipped the delay"


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_damages_frames_that_the_receiver_then_drops(hosts, backend):
    """corrupt 20 %: a bit flipped in a fifth of the frames.  UDP (or IP) checksums catch most of
    them, so fewer datagrams reach the socket; a flipped bit that lands in a field no checksum
    covers (the Ethernet padding) may pass."""
    hosts.impair(c2s=Netem(corrupt=20), backend=_backend(backend))
    got = _udp_burst(hosts, N)
    lo, hi = binomial_bounds(N, 0.20)
    assert lo * 0.9 <= N - len(got) <= hi, f"{N - len(got)} of {N} datagrams lost to corruption"


@pytest.mark.parametrize("backend", BACKENDS)
def test_rate_limits_a_bulk_transfer(hosts, backend):
    """8 Mbit/s: the server's capture sees 1 MB arrive at no more than 8 Mbit/s (plus the
    bucket's first burst), and not much less on an idle link."""
    hosts.impair(c2s=Netem(rate_kbit=8000), backend=_backend(backend))
    n = 1_000_000
    with hosts.capture(bulk=True) as cap:
        srv = hosts.server.listen(7788)
        c = hosts.client.connect(srv.address)
        peer = srv.accept()
        sending = c.send(b"x" * n, wait=False)
        peer.recv_exactly(n, timeout=30)
        sending.wait(30)
    conn = cap.trace.connection(port=7788)
    data = sorted((s for s in conn.received if conn.side(s) == "client" and s.length), key=lambda s: s.time)
    wire_bytes = sum(s.length + 66 for s in data[1:])      # payload, TCP/IP headers, Ethernet
    seconds = data[-1].time - data[0].time
    mbit = wire_bytes * 8 / seconds / 1e6
    assert 5.0 <= mbit <= 8.4, f"{mbit:.2f} Mbit/s with an 8 Mbit/s rate"
