"""The capture's end-of-run flush (``flush_wire``) without a network: what a sending device
that refuses frames does to it."""
import errno
import threading

import pytest

from tcplab import CaptureIncomplete
from tcplab.observe.capture import flush_wire


class _Refusing:
    """A packet socket whose device drops every frame at once, as a veth does in the moment its
    peer has gone down and before the kernel swaps in the carrier-off qdisc."""

    def __init__(self, err):
        self.err, self.sent = err, 0

    def bind(self, addr):
        pass

    def send(self, frame):
        self.sent += 1
        raise OSError(self.err, "refused")

    def close(self):
        pass


class _Host:
    def __init__(self, name, sock):
        self.name, self.ifname, self.mac = name, "eth0", "02:00:00:00:00:01"
        self.ns = self
        self._sock = sock

    def run(self, fn, *args):
        return self._sock


@pytest.mark.parametrize("err", [errno.ENOBUFS, errno.ENETDOWN])
def test_a_device_that_refuses_markers_is_a_wire_that_lost_them(err):
    sock = _Refusing(err)
    src, dst = _Host("client", sock), _Host("server", None)
    with pytest.raises(CaptureIncomplete, match="no marker frame sent client -> server arrived within 0.2 s"):
        flush_wire(src, dst, threading.Condition(), lambda token: False, 0.2)
    assert sock.sent >= 2, "the flush gave up after the first refused marker instead of trying again"


def test_other_send_errors_are_not_hidden():
    src, dst = _Host("client", _Refusing(errno.EPERM)), _Host("server", None)
    with pytest.raises(PermissionError):
        flush_wire(src, dst, threading.Condition(), lambda token: False, 0.2)
