"""Real kernel sockets inside a host: thin, explicit wrappers that keep the host in reach so a lab
can ask the kernel (sock_diag) for the socket's TCP state."""
from __future__ import annotations

import errno
import os
import select
import socket
import struct
import threading
import time

from ..errors import TcplabError, WaitTimeout
from ..observe.tcpinfo import TcpInfo


class Listener:
    """A listening socket in ``host``.  ``address`` is (ip, port) to connect to."""

    def __init__(self, host, *, port: int = 0, family: int = 4, backlog: int = 16):
        self.host = host
        self.family = family
        self.sock = host.socket(family)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host.addr(family), port))
        self.sock.listen(backlog)
        self.address = self.sock.getsockname()[:2]
        self.port = self.address[1]

    def accept(self, timeout: float = 5.0) -> "Conn":
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            raise WaitTimeout(f"no connection to accept on {self.host.name} port {self.port} "
                              f"within {timeout:g} s (is the handshake being dropped?)")
        s, peer = self.sock.accept()
        self.host._closables.append(s)
        return Conn(self.host, s)

    def close(self) -> None:
        self.sock.close()

    def __repr__(self) -> str:
        return f"<Listener {self.host.name} {self.address}>"


class Conn:
    """One end of a TCP connection."""

    def __init__(self, host, sock: socket.socket):
        self.host = host
        self.sock = sock
        self.local = sock.getsockname()[:2]
        try:
            self.peer = sock.getpeername()[:2]
        except OSError:
            self.peer = None

    @classmethod
    def _open(cls, host, address: tuple, *, timeout: float = 5.0, wait: bool = True,
              port: int = 0) -> "Conn":
        """What ``host.connect(address)`` does: a socket of ``host`` connecting to ``address``."""
        c = cls.bound(host, 6 if ":" in address[0] else 4, port)
        c.start(address)
        if wait:
            c.wait_connected(timeout)
        return c

    @classmethod
    def bound(cls, host, family: int, port: int = 0) -> "Conn":
        """A socket of ``host`` bound to ``port`` (0: any), not connected yet: :meth:`start`."""
        s = host.socket(family)
        if port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host.addr(family), port))
        s.setblocking(False)
        return cls(host, s)

    def start(self, address: tuple) -> "Conn":
        """Send the SYN to ``address`` and return at once (SYN_SENT until the handshake completes)."""
        err = self.sock.connect_ex(tuple(address[:2]))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, f"connect to {address} from {self.host.name}: {os.strerror(err)}")
        self.peer = tuple(address[:2])
        return self

    def wait_connected(self, timeout: float = 5.0) -> "Conn":
        """Block until the handshake completes.  A failed connect raises OSError with its errno
        (ConnectionRefusedError for an RST, for example)."""
        _, w, _ = select.select([], [self.sock], [], timeout)
        if not w:
            raise WaitTimeout(f"connect from {self.host.name} {self.local} to {self.peer} did not complete "
                              f"within {timeout:g} s")
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"connect from {self.host.name} to {self.peer}: {os.strerror(err)}")
        self.sock.setblocking(True)
        return self

    # -- data --------------------------------------------------------------------------
    def send(self, data: bytes, *, wait: bool = True) -> "Sending | None":
        """Write all of ``data``.  With ``wait=False`` the write goes on in a thread of its own (a
        bulk transfer larger than the two socket buffers, while this thread reads the other end or
        watches the wire) and the :class:`Sending` returned says when it is done."""
        self.sock.setblocking(True)
        if wait:
            self.sock.sendall(data)
            return None
        return Sending(self, data)

    def _recv_some(self, size: int, deadline: float, waiting_for: str) -> bytes:
        """One recv() of up to ``size`` bytes once the socket is readable (b"" is EOF); raises
        WaitTimeout saying ``waiting_for`` if nothing comes before ``deadline``."""
        r, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            raise WaitTimeout(waiting_for)
        return self.sock.recv(size)

    def recv_exactly(self, n: int, timeout: float = 5.0) -> bytes:
        buf = b""
        deadline = time.monotonic() + timeout
        while len(buf) < n:
            chunk = self._recv_some(n - len(buf), deadline, f"{self.host.name} received {len(buf)} of {n} "
                                    f"bytes within {timeout:g} s")
            if not chunk:
                raise TcplabError(f"{self.host.name}: the peer closed after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def recv_eof(self, timeout: float = 5.0) -> bytes:
        """Read until the peer's FIN (EOF); returns what was read."""
        buf = b""
        deadline = time.monotonic() + timeout
        while chunk := self._recv_some(65536, deadline, f"{self.host.name}: no EOF from the peer within "
                                                         f"{timeout:g} s"):
            buf += chunk
        return buf

    # -- closing -----------------------------------------------------------------------
    def shutdown_write(self) -> None:
        """Half-close: send FIN, keep receiving."""
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        """Abortive close: SO_LINGER with timeout 0, then close -> the kernel sends RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    # -- state -------------------------------------------------------------------------
    def _end(self, peer: bool) -> tuple:
        return (self.host.peer, self.peer, self.local) if peer else (self.host, self.local, self.peer)

    def state(self, *, peer: bool = False) -> str:
        """This connection's TCP state now, read from the kernel (``CLOSED`` once it is gone; a
        timewait socket is ``TIME_WAIT``).  ``peer=True``: the other end's, in the other host
        (``SYN_RECV`` for a half-open connection that accept() has not returned yet).  What
        happened earlier is the capture's record: ``cap.trace.connection(...).states(side)``."""
        from .diag import state_of
        host, local, remote = self._end(peer)
        return state_of(host.tcp_sockets(), local, remote)

    def wait_state(self, *states: str, timeout: float = 5.0, peer: bool = False) -> str:
        """Poll the kernel until this connection (``peer=True``: its other end) is in one of
        ``states``; return the one reached.  On a timeout the error lists every state seen, in
        order."""
        from .diag import wait_state
        return wait_state(*self._end(peer), states, timeout)

    def error(self) -> int:
        """The error the kernel holds for this socket (``SO_ERROR``: ``errno.ECONNRESET`` after a
        RST, 0 for none), as the application's next call would get it; reading clears it."""
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def info(self) -> "TcpInfo":
        """The kernel's view of this end (``getsockopt(TCP_INFO)``): congestion window, ssthresh,
        RTT, MSS, retransmissions, window scales.  See :class:`TcpInfo`."""
        return TcpInfo.unpack(self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256))

    def fileno(self) -> int:
        return self.sock.fileno()

    def __repr__(self) -> str:
        return f"<Conn {self.host.name} {self.local} -> {self.peer}>"


class Sending:
    """A write of :meth:`Conn.send` with ``wait=False`` going on in its own thread."""

    def __init__(self, conn: Conn, data: bytes):
        self.conn, self.size = conn, len(data)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(data,), daemon=True,
                                        name=f"tcplab-send-{conn.host.name}")
        self._thread.start()

    def _run(self, data: bytes) -> None:
        try:
            self.conn.sock.sendall(data)
        except BaseException as exc:  # handed to wait(), which raises it in the lab's thread
            self.error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float = 5.0) -> None:
        """Block until every byte has been handed to the kernel; raise what the write raised."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise WaitTimeout(f"{self.conn.host.name} had not written its {self.size} bytes within {timeout:g} s "
                              "(is the peer reading? a zero window stops the writer)")
        if self.error is not None:
            raise self.error
