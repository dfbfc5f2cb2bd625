"""Captures on both ends of the link, proven ready before traffic and proven complete after it.

* **Ready**: each capture socket is an ``AF_PACKET`` socket created *inside* the host's namespace
  and bound to ``eth0`` before :meth:`Capture.start` returns; from that moment the kernel queues
  every frame for it.  Scapy's sniffer thread is then started and its ``started_callback`` awaited.
* **Flushed**: on stop, a marker frame (ethertype 0x88B5, never TCP, so never dropped by tcplab's
  rules) is sent across the wire in each direction and awaited at the far end: segments queued on
  the wire before it (netem delay, bridge) have arrived by then.
* **Complete**: ``PACKET_STATISTICS`` gives how many frames the kernel queued and dropped per socket.
  The capture waits until the sniffer has read all that were queued; any kernel drop raises
  :class:`~tcplab.errors.CaptureIncomplete` instead of letting a lab assert on a partial trace.

The frames are written to one pcap file per end (``<name>-client.pcap``, ``<name>-server.pcap``).
"""
from __future__ import annotations

import contextlib
import errno
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import CaptureIncomplete, TcplabError
from ..wait import until
from .trace import load_scapy_layers

SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
SO_TIMESTAMPNS = 35
ETH_P_ALL = 0x0003
SO_RCVBUFFORCE = 33
MARKER_ETHERTYPE = 0x88B5  # IEEE local experimental
MARKER_MAGIC = b"tcplab-flush"
RCVBUF = 8 << 20


def _open_listen_socket(ifname: str):
    """Runs in the host's namespace thread.

    The socket is created with protocol 0 and bound with ETH_P_ALL: Scapy's own constructor
    creates it with ETH_P_ALL and then binds, and that re-bind waits for an RCU grace period in
    the kernel (about 10 ms per socket).  It is then handed to Scapy as an L2ListenSocket."""
    load_scapy_layers()
    from scapy.arch.linux import L2ListenSocket
    from scapy.layers.l2 import Ether
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        try:
            raw.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except PermissionError:
            # Rootless (CAP_NET_ADMIN only in a user namespace): the buffer the machine's
            # net.core.rmem_max allows (212 KiB by default), plenty for a lab's exchange; a frame
            # it cannot hold is counted by the kernel and the capture says it is incomplete.
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        raw.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)      # VLAN info, as Scapy expects
        raw.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        raw.bind((ifname, ETH_P_ALL))
    except BaseException:
        raw.close()
        raise
    s = L2ListenSocket.__new__(L2ListenSocket)
    s.ins, s.outs, s.iface, s.type, s.promisc = raw, None, ifname, ETH_P_ALL, False
    s.LL, s.lvl, s.auxdata_available, s.closed = Ether, 2, True, False
    _stats(raw)  # reset the counters: everything from here on is accounted for
    return s


# Packet sockets take their SO_TIMESTAMPNS stamp where the kernel stamps the frame: as it leaves
# or arrives, while any socket on the machine asks for timestamps (the netstamp static key).
# When none does, the first request turns the key on in deferred work, and until that work has run
# frames are stamped when the capture *reads* them: late, which sorted a server's FIN after the
# client's ACK of it (seen under load in CI).  So the process keeps the key on with a socket of
# its own (unbound, no traffic) from its first capture, after checking on the host's loopback that
# frames are stamped on arrival.
_stamp_keeper: socket.socket | None = None


def keep_arrival_timestamps(host, timeout: float = 5.0) -> None:
    global _stamp_keeper
    if _stamp_keeper is not None:
        return
    keeper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    keeper.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    host.ns.run(_wait_arrival_stamps, timeout)
    _stamp_keeper = keeper


def _wait_arrival_stamps(timeout: float) -> None:
    """Runs in a host's namespace thread: a datagram to itself on ``lo`` until its timestamp is
    earlier than the read (stamped on arrival), or ``timeout``."""
    import select
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        rx.bind(("127.0.0.1", 0))

        def stamped_on_arrival() -> bool:
            tx.sendto(b"t", rx.getsockname())
            select.select([rx], [], [], 1.0)
            before_read = time.time()
            _, anc, _, _ = rx.recvmsg(16, 64)
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", data[:16])
                    return sec + nsec / 1e9 < before_read
            return False
        until(stamped_on_arrival, timeout, "the kernel to timestamp frames on arrival (net_enable_timestamp)")
    finally:
        rx.close()
        tx.close()


def _close_later(socks: list) -> None:
    """Closing a packet socket waits for an RCU grace period (~14 ms); nothing needs to wait for
    it, so it happens in a short-lived thread.  (The kernel closes them anyway if we die.)"""
    if socks:
        threading.Thread(target=lambda: [s.close() for s in socks], daemon=True,
                         name="tcplab-capture-close").start()


def _stats(sock: socket.socket) -> tuple[int, int]:
    """(frames queued to the socket, frames the kernel dropped) since the last call."""
    packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return packets - drops, drops  # the kernel counts drops in tp_packets too


def _marker_frame(src_mac: str, dst_mac: str, token: bytes) -> bytes:
    mac = lambda m: bytes.fromhex(m.replace(":", ""))  # noqa: E731
    return mac(dst_mac) + mac(src_mac) + struct.pack("!H", MARKER_ETHERTYPE) + MARKER_MAGIC + token


def is_marker(pkt: Any) -> bool:
    return getattr(pkt, "type", None) == MARKER_ETHERTYPE


def flush_wire(src, dst, cond: threading.Condition, arrived: Callable[[bytes], bool], timeout: float,
               check: Callable[[], None] = lambda: None, progress: Callable[[], int] = lambda: 0) -> None:
    """Send marker frames ``src`` -> ``dst`` (backing off from 50 ms) until ``arrived(token)``,
    evaluated under ``cond`` whenever a reader notifies it.  ``check`` runs after every wait (a
    reader's failure raises there).  A marker arrives after everything sent before it, so its
    arrival proves the capture holds every frame that was on the wire; where none arrives within
    ``timeout``, frames may still be missing, and :class:`CaptureIncomplete` says so.  ``progress``
    counts the frames the reader has taken: while it grows (a slow machine's reader still working
    through a burst), the deadline moves on."""
    out = src.ns.run(socket.socket, socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        out.bind((src.ifname, 0))
        deadline = time.monotonic() + timeout
        read = progress()
        n = 0
        while True:
            token = f"{src.name}>{dst.name}#{n}".encode()
            try:
                out.send(_marker_frame(src.mac, dst.mac, token))
            except OSError as exc:
                # A device that drops the frame at once (a veth whose peer is down answers ENOBUFS,
                # a downed link ENETDOWN) is a wire that lost this marker: try again until the deadline.
                if exc.errno not in (errno.ENOBUFS, errno.ENETDOWN, errno.EAGAIN):
                    raise
            with cond:
                ok = cond.wait_for(lambda t=token: arrived(t),
                                   timeout=min(0.05 * 2 ** min(n, 4), max(0.0, deadline - time.monotonic())))
            check()
            if ok:
                return
            if time.monotonic() >= deadline and progress() != read:
                read, deadline = progress(), time.monotonic() + timeout
            if time.monotonic() >= deadline:
                raise CaptureIncomplete(
                    f"no marker frame sent {src.name} -> {dst.name} arrived within {timeout:g} s ({n + 1} sent): "
                    "what was still on the wire may be missing from the capture (is the wire dropping "
                    "everything? give flush_timeout= more time for a slow wire)")
            n += 1
    finally:
        out.close()


@contextlib.contextmanager
def whole_pcap(path: Path):
    """Around the writing of one pcap: if it cannot be written whole (disk full, read-only
    folder), the partial file is removed and the error names the folder."""
    try:
        yield
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise TcplabError(f"could not write the capture {path.name} in {path.parent}: "
                          f"{exc.strerror or exc}; free space there (or choose another folder, "
                          "e.g. pytest --basetemp DIR)") from None


class BothEnds:
    """What every capture of both ends shares: ``with`` (start, then stop; on an error inside
    the block, stop without hiding that error), and the trace's connections."""

    running = False

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.stop()
        else:  # keep the original error; still save what was captured
            try:
                self.stop()
            except Exception:
                self.close()

    # -- the kernel's record, kept alongside (tcplab.observe.kernel) ------------------------
    _kernel = None
    #: keep the kernel's sender record too (``tcp:tcp_probe`` on every segment a socket
    #: receives); off unless asked for, since a bulk transfer pays for every record
    sender = False

    @property
    def kernel(self):
        """The :class:`~tcplab.observe.kernel.KernelRecord` of this capture: state changes and
        sender samples of the topology's sockets."""
        if self._kernel is None:
            from .kernel import KernelRecord
            self._kernel = KernelRecord("the capture has not run")
        return self._kernel

    @property
    def sender_path(self) -> Path:
        """Where :meth:`stop` writes the sender record (``tcplab tsg`` finds it beside the pcaps)."""
        return Path(self.topo.workdir) / f"{self.name}-sender.json"

    def _record_kernel(self) -> None:
        self.kernel.start(self.topo, sender=self.sender)

    def _collect_kernel(self) -> None:
        self.kernel.stop(self.topo)
        self.kernel.save_sender(self.sender_path)

    def _drop_kernel(self) -> None:
        if self._kernel is not None:
            self._kernel.drop()

    @property
    def saw_traffic(self) -> bool:
        """Stopped, with at least one frame captured on either end."""
        return not self.running and self._saw_traffic()

    def _saw_traffic(self) -> bool:
        raise NotImplementedError

    # the state record, as labs read it from the capture
    def states(self, sock):
        """The state changes the kernel logged for ``sock`` (a listener, or a connection that is
        no trace connection: one that never sent a segment) while this capture ran.  A
        connection's own record is ``cap.trace.connection(...).states(side)``.  Raises
        :class:`~tcplab.Unsupported` where the kernel has no tracing."""
        from .states import StateRecord
        local = tuple(getattr(sock, "local", None) or sock.address)
        changes = self.kernel.changes
        if changes is None:
            from ..errors import Unsupported
            raise Unsupported(self.kernel.states_unavailable or "the kernel's state record is unavailable")
        return StateRecord([c for c in changes if c.local == local])

    @property
    def states_unavailable(self) -> str | None:
        return self.kernel.states_unavailable

    def state_paths(self) -> list[list[str]]:
        """See :meth:`~tcplab.observe.kernel.KernelRecord.state_paths`."""
        return self.kernel.state_paths()


class Capture(BothEnds):
    """Capture on the client's and the server's ``eth0``.  Use as a context manager::

        with topo.capture() as cap:
            ...traffic...
        cap.trace.connection(port=7788).expect(...)
    """

    def __init__(self, topo, *, name: str = "capture", sender: bool = False, flush_timeout: float = 3.0,
                 ready_timeout: float = 5.0):
        self.topo = topo
        self.name = name
        self.sender = sender
        self.flush_timeout = flush_timeout
        self.ready_timeout = ready_timeout
        self.paths = {h.name: Path(topo.workdir) / f"{name}-{h.name}.pcap" for h in topo}
        self.packets: dict[str, list] = {}
        self.stats: dict[str, dict[str, int]] = {}
        self._socks: dict[str, Any] = {}
        self._seen = {h.name: 0 for h in topo}
        self._markers: dict[str, set[bytes]] = {h.name: set() for h in topo}
        self._cond = threading.Condition()
        self._sniffer = None
        self._trace = None
        self.running = False

    # -- life cycle --------------------------------------------------------------------
    def start(self) -> "Capture":
        from scapy.sendrecv import AsyncSniffer
        keep_arrival_timestamps(self.topo.client)
        for h in self.topo:
            self._socks[h.name] = h.ns.run(_open_listen_socket, h.ifname)
        self._delivered = {n: 0 for n in self._socks}
        self._dropped = {n: 0 for n in self._socks}
        ready = threading.Event()
        self._sniffer = AsyncSniffer(opened_socket={s: n for n, s in self._socks.items()},
                                     prn=self._on_packet, store=True, started_callback=ready.set)
        self._sniffer.start()
        if not ready.wait(self.ready_timeout):
            self._close_sockets()
            raise TcplabError(f"the capture thread did not start within {self.ready_timeout:g} s")
        self._record_kernel()
        self.running = True
        return self

    def _on_packet(self, pkt: Any) -> None:
        with self._cond:
            self._seen[pkt.sniffed_on] += 1
            if is_marker(pkt):
                self._markers[pkt.sniffed_on].add(bytes(pkt.payload)[len(MARKER_MAGIC):])
            self._cond.notify_all()

    def _saw_traffic(self) -> bool:
        return any(self.packets.values())

    def _flush(self, src, dst) -> None:
        """Send markers src -> dst until one arrives at dst (CaptureIncomplete after the flush timeout)."""
        flush_wire(src, dst, self._cond, lambda token: token in self._markers[dst.name], self.flush_timeout,
                   progress=lambda: sum(self._seen.values()))

    def _drain(self, stall: float = 5.0) -> None:
        """Wait until the sniffer has read every frame the kernel queued.  Fails only if it makes
        no progress for ``stall`` seconds (a slow, emulated machine may need long for a burst)."""
        while True:
            with self._cond:
                before = sum(self._seen.values())
            try:
                until(self._drained, stall, "the sniffer to read every frame the kernel queued")
                return
            except TimeoutError:
                with self._cond:
                    if sum(self._seen.values()) == before:
                        raise

    def _drained(self) -> bool:
        self._account()
        with self._cond:
            return all(self._seen[n] >= self._delivered[n] for n in self._socks)

    def _account(self) -> None:
        for n, s in self._socks.items():
            delivered, dropped = _stats(s.ins)
            self._delivered[n] += delivered
            self._dropped[n] += dropped

    def stop(self) -> "Capture":
        """Flush the wire, prove the capture complete, stop, write the pcaps."""
        if not self.running:
            return self
        try:
            c, s = self.topo.client, self.topo.server
            self._flush(c, s)
            self._flush(s, c)
            self._account()
            self._drain()
        finally:
            self._sniffer.stop(join=True)
            self.running = False
            self._close_sockets()
            self._collect_kernel()
        results = self._sniffer.results or []
        for h in self.topo:
            self.packets[h.name] = [p for p in results if p.sniffed_on == h.name and not is_marker(p)]
            self._write_pcap(h.name)
            self.stats[h.name] = {"delivered": self._delivered[h.name], "dropped": self._dropped[h.name]}
        lost = {n: d for n, d in self._dropped.items() if d}
        if lost:
            raise CaptureIncomplete(
                "the kernel dropped frames on the capture socket, so the trace is partial: "
                + ", ".join(f"{n}: {d} of {d + self._delivered[n]}" for n, d in lost.items())
                + f" (pcaps: {', '.join(map(str, self.paths.values()))}). Keep lab flows small.")
        return self

    def _write_pcap(self, host: str) -> None:
        """One pcap per end.  If it cannot be written whole (disk full, read-only folder), the
        partial file is removed and the error names the folder: a lab never points at a pcap
        that lacks frames."""
        from scapy.utils import PcapWriter
        path = self.paths[host]
        with whole_pcap(path):
            with PcapWriter(str(path), linktype=1, sync=False) as w:
                for p in self.packets[host]:
                    w.write(p)

    def _close_sockets(self) -> None:
        _close_later(list(self._socks.values()))
        self._socks = {}

    def close(self) -> None:
        if self.running:
            self._sniffer.stop(join=True)
            self.running = False
        self._close_sockets()
        self._drop_kernel()

    # -- results -----------------------------------------------------------------------
    @property
    def trace(self):
        """The :class:`tcplab.Trace` of both ends (after the capture stopped)."""
        if self.running:
            raise TcplabError("the capture is still running: read .trace after the `with` block")
        if self._trace is None:
            from .trace import Trace
            self._trace = Trace.from_captures(self.packets, self.topo, pcaps=self.paths, kernel=self.kernel)
        return self._trace
