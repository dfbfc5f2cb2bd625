"""Bulk captures: a TPACKET_V3 ring per end, headers only, that keeps up with a multi-Gbit/s flow.

Scapy's sniffer reads one frame per ``recv()`` and builds a packet object for it; it keeps up with
the labs' small flows but not with a bulk transfer (a 200 MB transfer lost about a third of its
frames).  This capture asks the kernel for less work per frame:

* a **memory-mapped TPACKET_V3 ring** (``PACKET_RX_RING``): the kernel writes frames into shared
  blocks, with no system call per frame; the ring is large enough (``ring_mb`` per end) to hold a
  whole transfer's headers, so the reader may lag behind and catch up;
* a one-instruction **classic BPF filter** (``ret #snaplen``) truncates every frame in the kernel,
  before it is copied into the ring (128 bytes hold Ethernet, IP and TCP headers with options);
* a reader thread walks each full block with ``struct`` and appends pcap records (nanosecond
  timestamps) to a buffer, then hands the block back; nothing is parsed per frame but its header.

Readiness, flushing and completeness are the same as :class:`tcplab.Capture`'s: the ring is
bound before :meth:`start` returns, marker frames flush the wire at stop, ``PACKET_STATISTICS``
proves that the kernel dropped nothing (else :class:`~tcplab.errors.CaptureIncomplete`), and one
pcap per end is written.  The trace is built by :func:`tcplab.observe.fastparse.segments_from_frames`,
without Scapy.
"""
from __future__ import annotations

import mmap
import os
import select
import socket
import struct
import threading
from pathlib import Path

from .capture import (ETH_P_ALL, MARKER_ETHERTYPE, MARKER_MAGIC, PACKET_STATISTICS, SOL_PACKET, BothEnds,
                      flush_wire, whole_pcap)
from ..errors import CaptureIncomplete, TcplabError, check_int
from ..errors import hide_config_errors as __tracebackhide__  # noqa: F401  (pytest)
from ..wait import until

PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V3 = 2
SO_ATTACH_FILTER = 26
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
BLOCK_SIZE = 1 << 16         # 64 KiB blocks: measured faster than 1 MiB ones (3.8 vs 2.5 Gbit/s)
FRAME_SIZE = 2048
BPF_RET_K = 0x06
PCAP_NS_MAGIC = 0xA1B23C4D
_BLOCK_HDR = struct.Struct("=IIIIIIQ")     # version, offset_to_priv, status, num_pkts, first, blk_len, seq
_PKT_HDR = struct.Struct("=IIIIIIHH")      # next, sec, nsec, snaplen, len, status, mac, net
_REC = struct.Struct("=IIII")
_MARKER = struct.pack("!H", MARKER_ETHERTYPE) + MARKER_MAGIC


def _open_ring(ifname: str, snaplen: int, ring_mb: int):
    """Runs in the host's namespace thread: the packet socket with its ring, bound to ``ifname``."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        # ret #snaplen: the kernel keeps the first snaplen bytes of every frame
        prog = struct.pack("HBBI", BPF_RET_K, 0, 0, snaplen)
        import ctypes
        buf = ctypes.create_string_buffer(prog)
        fprog = struct.pack("HL", 1, ctypes.addressof(buf))
        s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        nblocks = max(2, ring_mb * (1 << 20) // BLOCK_SIZE)
        req = struct.pack("IIIIIII", BLOCK_SIZE, nblocks, FRAME_SIZE, nblocks * (BLOCK_SIZE // FRAME_SIZE),
                          10, 0, 0)  # retire a partly filled block after 10 ms
        s.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        ring = mmap.mmap(s.fileno(), nblocks * BLOCK_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        s.bind((ifname, ETH_P_ALL))
        s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)  # reset the counters
        return s, ring, nblocks, buf
    except BaseException:
        s.close()
        raise


class _End:
    """One end's ring and what its reader has taken out of it."""

    def __init__(self, name: str, sock, ring, nblocks: int, keep, spill: Path):
        self.name, self.sock, self.ring, self.nblocks, self._keep = name, sock, ring, nblocks, keep
        self.view = memoryview(ring)
        self.block = 0
        self.spill_path, self.spill_fd = spill, None   # blocks set aside while the traffic runs
        self.records = bytearray()          # pcap records, in arrival order
        self.taken = 0                      # frames taken from the ring (markers included)
        self.frames = 0                     # frames converted to pcap records (markers not)
        self.markers: set[bytes] = set()
        self.delivered = 0
        self.dropped = 0

    def read_ready_blocks(self, convert: bool = True) -> int:
        """Take every block the kernel has handed over; returns how many frames were taken.

        While the traffic runs (``convert=False``) each block is written whole to a spill file
        beside the pcaps and handed back: ``os.write`` copies it without holding the GIL, which
        the threads driving a bulk transfer need between their system calls, and no Python
        object is made per frame or per block.  (Measured with bench/bulk_capture.py: converting
        frame by frame during the transfer cost a third of the throughput, copying blocks into
        Python bytes a tenth.)  Converting first turns what was spilled into records, so a marker
        is never left unseen there."""
        if convert and self.spill_fd is not None:
            self._convert_spilled()
        ring, n = self.ring, 0
        while True:
            base = self.block * BLOCK_SIZE
            _, _, status, num, _, used, _ = _BLOCK_HDR.unpack_from(ring, base)
            if not status & TP_STATUS_USER:
                return n
            if convert:
                self._convert(ring, base)
            else:
                if self.spill_fd is None:
                    self.spill_fd = os.open(self.spill_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                                            0o600)
                view = self.view[base:base + used]
                while view:
                    view = view[os.write(self.spill_fd, view):]
            n += num
            self.taken += num
            struct.pack_into("=I", ring, base + 8, TP_STATUS_KERNEL)
            self.block = (self.block + 1) % self.nblocks

    @property
    def spilled(self) -> bool:
        return self.spill_fd is not None

    def _convert_spilled(self) -> None:
        fd, self.spill_fd = self.spill_fd, None
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
        finally:
            os.close(fd)
            self.spill_path.unlink(missing_ok=True)
        off = 0
        while off < len(data):
            used = _BLOCK_HDR.unpack_from(data, off)[5]
            self._convert(data, off)
            off += used

    def _convert(self, buf, base: int) -> None:
        """The frames of the block at ``buf[base:]`` as pcap records (markers noted, not kept)."""
        rec, out = _REC.pack, self.records
        _, _, _, num, off, _, _ = _BLOCK_HDR.unpack_from(buf, base)
        pos = base + off
        for _ in range(num):
            nxt, sec, nsec, snap, wirelen, _, mac, _ = _PKT_HDR.unpack_from(buf, pos)
            start = pos + mac
            if buf[start + 12:start + 14 + len(MARKER_MAGIC)] == _MARKER:
                self.markers.add(bytes(buf[start + 14 + len(MARKER_MAGIC):start + snap]))
            else:
                out += rec(sec, nsec, snap, wirelen)
                out += buf[start:start + snap]
                self.frames += 1
            pos += nxt

    def half_full(self) -> bool:
        """Whether the kernel has filled at least half of the ring since the last read."""
        i = (self.block + self.nblocks // 2) % self.nblocks
        return bool(struct.unpack_from("=I", self.ring, i * BLOCK_SIZE + 8)[0] & TP_STATUS_USER)

    def account(self) -> None:
        packets, drops, _ = struct.unpack("III", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12))
        self.delivered += packets - drops
        self.dropped += drops

    def close(self) -> None:
        if self.spill_fd is not None:
            os.close(self.spill_fd)
            self.spill_fd = None
        self.spill_path.unlink(missing_ok=True)
        self.view.release()
        try:
            self.ring.close()
        except (BufferError, ValueError):
            pass
        self.sock.close()


class RingCapture(BothEnds):
    """Headers-only capture of both ends for bulk transfers.  Use like :class:`tcplab.Capture`::

        with topo.capture(bulk=True) as cap:      # snaplen 128, 16 MiB ring per end
            ...a 200 MB transfer...
        conn = cap.trace.connection(port=5001)
    """

    # ring_mb: 16 MiB holds the headers of about 60 MB of transfer with the reader stopped.  The
    # kernel allocates and zeroes the whole ring when the capture starts; 64 MiB per end took
    # 0.25-0.55 s and held a CPU for up to 170 ms (docs/kernels.md), long enough to stall another
    # lab's delay line and break its timing.
    def __init__(self, topo, *, name: str = "capture", sender: bool = False, snaplen: int = 128,
                 ring_mb: int = 16, flush_timeout: float = 3.0, ready_timeout: float = 5.0):
        check_int("snaplen", snaplen, 68, 65535, "bytes from 68 (headers with options) to 65535")
        check_int("ring_mb", ring_mb, 2, 4096, "MiB per end from 2 to 4096")
        self.topo, self.name, self.snaplen, self.ring_mb, self.sender = topo, name, snaplen, ring_mb, sender
        self.flush_timeout, self.ready_timeout = flush_timeout, ready_timeout
        self.paths = {h.name: Path(topo.workdir) / f"{name}-{h.name}.pcap" for h in topo}
        self.stats: dict[str, dict[str, int]] = {}
        self._ends: dict[str, _End] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._eager = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._trace = None
        self._packets = None
        self._records: dict = {}
        self.running = False

    def start(self) -> "RingCapture":
        try:
            for h in self.topo:
                sock, ring, nblocks, keep = h.ns.run(_open_ring, h.ifname, self.snaplen, self.ring_mb)
                self._ends[h.name] = _End(h.name, sock, ring, nblocks, keep,
                                          Path(self.topo.workdir) / f".{self.name}-{h.name}.ring")
        except OSError as exc:
            self._close_ends()
            raise TcplabError(f"could not set up a {self.ring_mb} MiB capture ring per end: {exc} "
                              "(try a smaller ring_mb)") from exc
        self._thread = threading.Thread(target=self._reader, name="tcplab-ring", daemon=True)
        self._thread.start()
        self._record_kernel()
        self.running = True
        return self

    def _reader(self) -> None:
        """Lazy while the traffic runs: every 20 ms it looks whether a ring is half full, and only
        then reads (reading takes the GIL, which the threads driving the traffic need; the ring
        holds the frames meanwhile).  Once stop() asks for it (``_eager``), it waits on the
        sockets and reads every block the kernel hands over."""
        poll = select.poll()
        for end in self._ends.values():
            poll.register(end.sock.fileno(), select.POLLIN | select.POLLERR)
        try:
            while not self._stop.is_set():
                if self._eager.is_set():
                    poll.poll(20)
                elif self._eager.wait(0.02):   # the 20 ms tick of the lazy phase, or stop() began
                    continue
                got = 0
                eager = self._eager.is_set()
                for end in self._ends.values():
                    if eager or end.half_full():
                        got += end.read_ready_blocks(convert=eager)
                if got:
                    with self._cond:
                        self._cond.notify_all()
        except BaseException as exc:  # surfaced by stop()
            self._error = exc
            with self._cond:
                self._cond.notify_all()

    def _flush(self, src, dst) -> None:
        flush_wire(src, dst, self._cond,
                   lambda token: token in self._ends[dst.name].markers or self._error is not None,
                   self.flush_timeout, self._raise_reader_error,
                   progress=lambda: sum(e.taken for e in self._ends.values()))

    def _raise_reader_error(self) -> None:
        if self._error is not None:
            raise TcplabError(f"the capture reader failed: {self._error}") from self._error

    def _drained(self) -> bool:
        for end in self._ends.values():
            end.account()
        with self._cond:
            return all(e.taken >= e.delivered and not e.spilled for e in self._ends.values())

    def stop(self) -> "RingCapture":
        if not self.running:
            return self
        try:
            c, s = self.topo.client, self.topo.server
            self._eager.set()
            self._flush(c, s)
            self._flush(s, c)
            until(self._drained, 10, "the ring reader to take every frame the kernel queued")
        finally:
            self._stop.set()
            self._thread.join()
            self.running = False
            self._collect_kernel()
        dropped = {n: e.dropped for n, e in self._ends.items() if e.dropped}
        self._records = {n: e.records for n, e in self._ends.items()}
        try:
            for name, end in self._ends.items():
                self.stats[name] = {"delivered": end.delivered, "dropped": end.dropped, "frames": end.frames}
                self._write_pcap(name, end)
        finally:
            self._close_ends()
        if dropped:
            raise CaptureIncomplete(
                "the kernel dropped frames on the capture ring, so the trace is partial: "
                + ", ".join(f"{n}: {d}" for n, d in dropped.items())
                + f" (pcaps: {', '.join(map(str, self.paths.values()))}); give a larger ring_mb")
        return self

    def _write_pcap(self, name: str, end: _End) -> None:
        path = self.paths[name]
        with whole_pcap(path), open(path, "wb") as f:
            f.write(struct.pack("=IHHiIII", PCAP_NS_MAGIC, 2, 4, 0, 0, self.snaplen, 1))
            f.write(end.records)

    def _close_ends(self) -> None:
        for end in self._ends.values():
            end.close()
        self._ends = {}

    def close(self) -> None:
        if self.running:
            self._stop.set()
            self._thread.join()
            self.running = False
        self._close_ends()
        self._drop_kernel()

    # -- results ----------------------------------------------------------------------
    def frames(self, host: str):
        """``(time, wire length, captured bytes)`` of every frame one end captured."""
        from .fastparse import iter_records
        return iter_records(self._records[host])

    @property
    def trace(self):
        if self.running:
            raise TcplabError("the capture is still running: read .trace after the `with` block")
        if self._trace is None:
            import gc
            from .fastparse import segments_from_records
            from .trace import Trace
            # Hundreds of thousands of new objects and no cycles among them: the cyclic garbage
            # collector would rescan them all again and again (measured: it doubled the time).
            was_enabled = gc.isenabled()
            gc.disable()
            try:
                sent, received = [], []
                for h in self.topo:
                    mine = {h.addr(4), h.addr(6)}
                    for seg in segments_from_records(self._records[h.name]):
                        (sent if seg.src in mine else received if seg.dst in mine else []).append(seg)
                self._trace = Trace.from_segments(sent, received, self.paths, kernel=self.kernel)
            finally:
                if was_enabled:
                    gc.enable()
        return self._trace

    def _saw_traffic(self) -> bool:
        return any(len(r) for r in self._records.values())

    @property
    def packets(self) -> dict[str, list]:
        """Scapy packets (slow: for small captures and compatibility with :class:`Capture`)."""
        if self._packets is None:
            from .trace import _read_pcap
            self._packets = {n: _read_pcap(p) for n, p in self.paths.items()}
        return self._packets
