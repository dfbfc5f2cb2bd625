"""Captures: ready before any traffic, complete or loudly not, pcaps written."""
import socket

import pytest

from tcplab.errors import CaptureIncomplete
from tcplab.observe.trace import Trace


def test_first_syn_is_always_captured(hosts):
    """Traffic sent immediately after start() is never missed (30 of 30 lost with a naive
    AsyncSniffer.start(); tcplab creates and binds the socket before returning)."""
    srv = hosts.server.listen(7788)
    for i in range(30):
        with hosts.capture(name=f"c{i}") as cap:
            c = hosts.client.connect(srv.address)
            srv.accept().close()
        first = cap.trace.connections(port=7788)[0].segments[0]
        assert first.flags == {"SYN"}, i
        c.close()


def test_pcaps_are_written_and_readable(hosts):
    with hosts.capture() as cap:
        srv = hosts.server.listen(7788)
        hosts.client.connect(srv.address)
        srv.accept()
    assert set(cap.paths) == {"client", "server"}
    offline = Trace.from_pcaps({n: p for n, p in cap.paths.items()},
                               {h.name: {h.addr(4), h.addr(6)} for h in hosts})
    assert offline.connection(port=7788).script() == cap.trace.connection(port=7788).script()


def test_kernel_drops_on_the_capture_socket_fail_loudly(hosts, monkeypatch):
    """With a tiny capture buffer and a burst of frames, the kernel drops some: the capture
    raises CaptureIncomplete with the counts instead of handing back a partial trace."""
    import tcplab.observe.capture as capmod
    monkeypatch.setattr(capmod, "RCVBUF", 1)  # the kernel rounds up to its minimum (a few frames)
    cap = hosts.capture()
    cap.start()
    out = hosts.client.ns.run(socket.socket, socket.AF_PACKET, socket.SOCK_RAW, 0)
    out.bind(("eth0", 0))
    dst = bytes.fromhex("02:00:c6:12:00:02".replace(":", ""))
    src = bytes.fromhex("02:00:c6:12:00:01".replace(":", ""))
    for _ in range(3000):
        out.send(dst + src + b"\x88\xb6" + b"\0" * 200)
    out.close()
    with pytest.raises(CaptureIncomplete, match=r"kernel dropped frames on the capture socket.*client: \d+ of \d+"):
        cap.stop()


def test_bulk_capture_is_complete_for_a_large_transfer(hosts):
    """bulk=True: a headers-only ring per end; 20 MB cross the wire, the capture drops nothing,
    every data byte appears in the trace, and the pcaps read back with the same segments.  The
    receiving kernel itself may drop a burst (Reno does not pace: a flight larger than the
    veth's backlog, net.core.netdev_max_backlog, loses its tail before any tap sees it); TCP
    re-sends those, and the capture must show each copy that arrived."""
    from tcplab import Trace
    nbytes = 20_000_000
    with hosts.capture(bulk=True) as cap:
        srv = hosts.server.listen(port=5001)
        client = hosts.client.connect(srv.address)
        peer = srv.accept()
        chunk = bytes(1 << 16)
        import threading
        got = []
        reader = threading.Thread(target=lambda: got.append(peer.recv_exactly(nbytes, timeout=60)))
        reader.start()
        for _ in range(nbytes // len(chunk)):
            client.send(chunk)
        client.send(bytes(nbytes % len(chunk)))
        reader.join(60)
        assert got and len(got[0]) == nbytes
    assert all(st["dropped"] == 0 for st in cap.stats.values()), cap.stats
    conn = cap.trace.connection(port=5001)
    data = {conn.rel_seq(s): s.length for s in conn if conn.side(s) == "client" and s.length}
    covered, nxt = 0, 1
    for seq in sorted(data):           # contiguous from relative seq 1 to nbytes + 1
        assert seq <= nxt, f"a gap in the data before relative seq {seq}"
        nxt = max(nxt, seq + data[seq])
    assert nxt == nbytes + 1
    # a segment missing at the receiver is one its kernel dropped: the sender's capture holds a
    # later copy of the same bytes, and the receiver's capture that copy's arrival
    arrived = {(s.seq, s.length) for s in conn.received}
    for s in conn.lost():
        assert (s.seq, s.length) in arrived, f"{conn.line(s)} never arrived in any copy: the capture missed it"
    assert max(len(s.payload) for s in conn) <= 128 - 14 - 20 - 20
    offline = Trace.from_pcaps({"client": cap.paths["client"], "server": cap.paths["server"]},
                               {"client": {hosts.client.addr(4)}, "server": {hosts.server.addr(4)}})
    fields = lambda c: [(s.seq, s.ack, s.flags, s.length, s.options) for s in c.segments]  # noqa: E731
    assert fields(offline.connection(port=5001)) == fields(conn)


def test_bulk_capture_spills_blocks_while_the_traffic_runs_and_loses_none(hosts, monkeypatch):
    """While the traffic runs, the ring's blocks go whole to a spill file (no GIL held, no object
    per frame); at stop they become records before anything else, the flush's markers among
    them, and the file goes.  Forced here on every tick of the reader, not only at half full."""
    from pathlib import Path
    from tcplab import until
    from tcplab.observe import ring
    monkeypatch.setattr(ring._End, "half_full", lambda self: True)
    spilled = []
    real = ring._End.read_ready_blocks

    def counting(self, convert=True):
        n = real(self, convert)
        if not convert and n:
            spilled.append(n)
        return n
    monkeypatch.setattr(ring._End, "read_ready_blocks", counting)
    nbytes = 5_000_000
    with hosts.capture(bulk=True) as cap:
        srv = hosts.server.listen(port=5001)
        client = hosts.client.connect(srv.address)
        peer = srv.accept()
        sending = client.send(bytes(nbytes), wait=False)
        assert len(peer.recv_exactly(nbytes, timeout=60)) == nbytes
        sending.wait(30)
        until(lambda: spilled, 5, "the reader to spill a block while the capture runs")
        assert list(Path(hosts.workdir).glob(".capture-*.ring")), "the spilled blocks are not in their file"
    assert spilled and sum(spilled) > 1000, spilled
    assert all(st["dropped"] == 0 for st in cap.stats.values()), cap.stats
    conn = cap.trace.connection(port=5001)
    assert sum(s.length for s in conn if conn.side(s) == "client") >= nbytes
    assert conn.segments[-1].time >= conn.segments[0].time
    assert not list(Path(hosts.workdir).glob(".capture-*.ring")), "the spill files were left behind"


def test_bulk_capture_validates_its_arguments(hosts):
    from tcplab import ConfigError
    with pytest.raises(ConfigError, match="snaplen=20 is out of range"):
        hosts.capture(bulk=True, snaplen=20)
    with pytest.raises(ConfigError, match="ring_mb=0 is out of range"):
        hosts.capture(bulk=True, ring_mb=0)


def test_a_flush_that_never_arrives_says_the_capture_may_be_partial(hosts):
    """A wire that delivers nothing at the end (its ports down): the capture cannot prove it holds
    everything that was on the wire, and says so instead of passing a partial trace."""
    from tcplab import CaptureIncomplete
    from tcplab.wire.netns import ipr
    cap = hosts.capture(flush_timeout=0.5).start()

    def ports_down():
        for idx in hosts.wire.ports.values():
            ipr(hosts.wire.ns).link("set", index=idx, state="down")
    hosts.wire.run(ports_down)
    with pytest.raises(CaptureIncomplete, match=r"no marker frame sent client -> server arrived within 0.5 s"):
        cap.stop()
