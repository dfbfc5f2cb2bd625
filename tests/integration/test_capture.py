"""Captures: ready before any traffic, complete or loudly not, pcaps written."""
import socket

import pytest

from tcplab.errors import CaptureIncomplete
from tcplab.trace import Trace


def test_first_syn_is_always_captured(topology):
    """Traffic sent immediately after start() is never missed (30 of 30 lost with a naive
    AsyncSniffer.start(); tcplab creates and binds the socket before returning)."""
    srv = topology.server.listen(7788)
    for i in range(30):
        with topology.capture(name=f"c{i}") as cap:
            c = topology.client.connect(srv.address)
            srv.accept().close()
        first = cap.trace.connections(port=7788)[0].segments[0]
        assert first.flags == {"SYN"}, i
        c.close()


def test_pcaps_are_written_and_readable(topology):
    with topology.capture() as cap:
        srv = topology.server.listen(7788)
        topology.client.connect(srv.address)
        srv.accept()
    assert set(cap.paths) == {"client", "server"}
    offline = Trace.from_pcaps({n: p for n, p in cap.paths.items()},
                               {h.name: {h.addr(4), h.addr(6)} for h in topology.hosts})
    assert offline.connection(port=7788).script() == cap.trace.connection(port=7788).script()


def test_kernel_drops_on_the_capture_socket_fail_loudly(topology, monkeypatch):
    """With a tiny capture buffer and a burst of frames, the kernel drops some: the capture
    raises CaptureIncomplete with the counts instead of handing back a partial trace."""
    import tcplab.capture as capmod
    monkeypatch.setattr(capmod, "RCVBUF", 1)  # the kernel rounds up to its minimum (a few frames)
    cap = topology.capture()
    cap.start()
    out = topology.client.ns.run(socket.socket, socket.AF_PACKET, socket.SOCK_RAW, 0)
    out.bind(("eth0", 0))
    dst = bytes.fromhex("02:00:c6:12:00:02".replace(":", ""))
    src = bytes.fromhex("02:00:c6:12:00:01".replace(":", ""))
    for _ in range(3000):
        out.send(dst + src + b"\x88\xb6" + b"\0" * 200)
    out.close()
    with pytest.raises(CaptureIncomplete, match=r"kernel dropped frames on the capture socket.*client: \d+ of \d+"):
        cap.stop()
