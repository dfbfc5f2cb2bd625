"""The kernel's tracepoints, read through ``perf_event_open``: the one reader behind the state
record (:mod:`tcplab.observe.states`) and the sender record (:mod:`tcplab.observe.sender`).

How, and why this way:

* **Nothing is left in the kernel.**  A tracepoint is opened as a perf event per CPU; the fds
  belong to this process, so the kernel removes them when it exits, even by SIGKILL.  (A tracefs
  *instance* would outlive the process.)  tracefs is read once per tracepoint, for its id and
  record layout, from a private mount namespace of a short-lived ``unshare`` child: no mount
  appears in the machine's namespace.
* **The captures' clock.**  Packet sockets stamp frames with CLOCK_REALTIME; perf refuses that
  clock for tracepoints, so events are stamped with CLOCK_MONOTONIC and shifted by the offset
  between the two clocks, sampled at every start and drain and interpolated at each record's
  time (a slewed realtime clock drifts from the monotonic one), so
  kernel records and segments share one time line.
* **Attribution.**  Tracepoints fire for every socket of the machine and carry no network
  namespace.  Each live :class:`~tcplab.Topology` has a subnet of its own, so an event belongs to
  a subscription when its socket's local address is one of the subscriber's; ports alone would
  not do (parallel labs use the same ports).
* **No silent loss.**  A per-CPU buffer that overflows makes the kernel count the records it
  dropped; a subscription that saw a drop refuses to be read as complete.

Where the kernel has no tracing (a container without perf events, an unprivileged user),
opening raises :class:`~tcplab.Unsupported` with the reason.
"""
from __future__ import annotations

import bisect
import ctypes
import fcntl
import mmap
import os
import platform
import re
import select
import struct
import subprocess
import threading
import time
from functools import lru_cache
from typing import Callable

from ..errors import CaptureIncomplete, Unsupported
from ..tools import in_user_namespace

PERF_TYPE_TRACEPOINT = 2
PERF_SAMPLE_TIME, PERF_SAMPLE_RAW = 1 << 2, 1 << 10
PERF_RECORD_LOST, PERF_RECORD_THROTTLE, PERF_RECORD_SAMPLE = 2, 5, 9
USE_CLOCKID, DISABLED, WATERMARK = 1 << 25, 1 << 0, 1 << 14
PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_DISABLE = 0x2400, 0x2401
CLOCK_MONOTONIC = 1
PERF_FLAG_FD_CLOEXEC = 8
NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}
NR_MEMBARRIER = {"x86_64": 324, "aarch64": 283}
MEMBARRIER_CMD_GLOBAL = 1
DRAIN_EVERY = 0.05              # seconds: the reader drains at least this often
_HEADER = struct.Struct("IHH")  # struct perf_event_header: type, misc, size
_SAMPLE = struct.Struct("QI")   # a sample's time, then its raw data's size

_libc = ctypes.CDLL(None, use_errno=True)


def unprivileged_reason(tracepoint: str) -> str:
    """Why a process that is root only in a user namespace (rootless) cannot read ``tracepoint``,
    and the real fix."""
    try:
        paranoid = open("/proc/sys/kernel/perf_event_paranoid").read().strip()
    except OSError:
        paranoid = "unknown"
    return (f"the kernel's record ({tracepoint}) needs root in the machine's own namespaces: tracefs, for the "
            f"tracepoint's id and layout, cannot be mounted in a user namespace, and perf events on tracepoints "
            f"need CAP_PERFMON (kernel.perf_event_paranoid is {paranoid}; -1 would be needed); run these labs as "
            "root (sudo pytest labs/) or in tcplab's VM, where the guest is root (pytest labs/ --tcplab-vm)")


@lru_cache(maxsize=None)
def tracepoint_layout(tracepoint: str, need: frozenset) -> tuple[int, dict[str, tuple[int, int]]]:
    """(id, {field: (offset, size)}) of ``tracepoint`` ("sock/inet_sock_set_state"), from tracefs
    (mounted, if it is not, in a private mount namespace of a child that exits at once)."""
    base = "/sys/kernel/tracing/events/" + tracepoint
    if in_user_namespace():
        raise Unsupported(unprivileged_reason(tracepoint))
    if os.path.isfile(base + "/id"):
        text = open(base + "/id").read() + open(base + "/format").read()
    else:
        try:
            r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                f"mount -t tracefs nodev /sys/kernel/tracing && cat {base}/id {base}/format"],
                               capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Unsupported(f"cannot read the format of the tracepoint {tracepoint} "
                              f"(unshare/mount tracefs: {exc})") from None
        if r.returncode != 0:
            first = (r.stderr.strip() or "mount failed").splitlines()[0]
            raise Unsupported(f"cannot read the format of the tracepoint {tracepoint} ({first})")
        text = r.stdout
    tp_id = int(text.split()[0])
    fields = {m[1]: (int(m[2]), int(m[3])) for m in
              re.finditer(r"field:[^;]*?(\w+)(?:\[\d+\])?;\s*offset:(\d+);\s*size:(\d+);", text)}
    if not need <= set(fields):
        raise Unsupported(f"the tracepoint {tracepoint} lacks fields {sorted(need - set(fields))} on this kernel")
    return tp_id, fields


def _attr(tp_id: int, watermark: int) -> bytes:
    """struct perf_event_attr (version 5, 112 bytes)."""
    a = bytearray(112)
    # opened disabled: a TraceLog enables it while someone subscribes (see TracepointReader.enable)
    struct.pack_into("IIQQQQQ", a, 0, PERF_TYPE_TRACEPOINT, 112, tp_id, 1, PERF_SAMPLE_TIME | PERF_SAMPLE_RAW,
                     0, USE_CLOCKID | DISABLED | WATERMARK)
    # poll() readiness once a quarter of the buffer is written, not every few records: a bulk
    # transfer would otherwise wake the reader thousands of times a second
    struct.pack_into("I", a, 48, watermark)
    struct.pack_into("i", a, 92, CLOCK_MONOTONIC)   # clockid (REALTIME is refused for tracepoints)
    return bytes(a)


def _online_cpus() -> list[int]:
    out = []
    for part in open("/sys/devices/system/cpu/online").read().strip().split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


class TracepointReader:
    """Every record of one tracepoint, machine-wide, from construction to :meth:`close`;
    :meth:`read_new` returns what the kernel wrote since the last call."""

    def __init__(self, tracepoint: str, need: set[str], pages: int):
        nr = NR_PERF_EVENT_OPEN.get(platform.machine())
        if nr is None:
            raise Unsupported(f"tcplab knows perf_event_open's number on x86_64 and aarch64, "
                              f"not {platform.machine()}")
        self.tracepoint, self.pages = tracepoint, pages
        self.tp_id, self.fields = tracepoint_layout(tracepoint, frozenset(need))
        attr = ctypes.create_string_buffer(_attr(self.tp_id, pages * mmap.PAGESIZE // 4), 112)
        self.fds: list[int] = []
        self.maps: list[mmap.mmap] = []
        self.page = mmap.PAGESIZE
        # (monotonic, realtime - monotonic) pairs, one at each enable and drain: the realtime clock
        # may be slewed (measured on this VM: 0.5 %, 25 ms in 5 s), so one offset taken when the
        # reader was made would put a record milliseconds away from the frames it caused;
        # records are shifted by the offset interpolated at their own time
        self._clock: list[tuple[float, float]] = []
        self._sample_clock()
        try:
            for cpu in _online_cpus():
                fd = _libc.syscall(nr, attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
                if fd < 0:
                    err = ctypes.get_errno()
                    raise Unsupported(f"perf_event_open on the tracepoint {tracepoint} failed: {os.strerror(err)} "
                                      "(a container without perf events, or perf_event_paranoid)")
                self.fds.append(fd)
                self.maps.append(mmap.mmap(fd, (1 + pages) * self.page, mmap.MAP_SHARED,
                                           mmap.PROT_READ | mmap.PROT_WRITE))
        except BaseException:
            self.close()
            raise

    def enable(self, on: bool) -> None:
        """Start or stop recording.  A disabled event costs the kernel almost nothing per hit,
        while an enabled one writes every record of the machine into this process's buffers: an
        idle pytest worker's reader would otherwise copy every segment of the other workers'
        bulk transfers (``tcp:tcp_probe`` fires for each one)."""
        self._sample_clock()
        for fd in self.fds:
            fcntl.ioctl(fd, PERF_EVENT_IOC_ENABLE if on else PERF_EVENT_IOC_DISABLE, 0)

    def _sample_clock(self) -> None:
        mono = time.monotonic()
        self._clock.append((mono, time.time() - mono))
        if len(self._clock) > 4096:
            del self._clock[:2048]

    def offset_at(self, mono: float) -> float:
        """realtime - monotonic at monotonic time ``mono``, interpolated between the samples."""
        clock = self._clock
        i = bisect.bisect_left(clock, (mono,))
        if i == 0:
            return clock[0][1]
        if i >= len(clock):
            return clock[-1][1]
        (m0, o0), (m1, o1) = clock[i - 1], clock[i]
        return o0 + (o1 - o0) * (mono - m0) / (m1 - m0) if m1 > m0 else o1

    def read_raw(self) -> list[bytes]:
        """What the kernel wrote into each CPU's buffer since the last call: whole records, one
        bytes object per CPU that wrote any (split them with :meth:`records`).  Copying the
        region out is all a drain does, so a bulk transfer's hundreds of thousands of records a
        second cost its threads one slice per CPU, not a parse per record."""
        size = self.pages * self.page
        out = []
        self._sample_clock()                # after every record below was written
        for m in self.maps:
            head = struct.unpack_from("Q", m, 1024)[0]
            tail = struct.unpack_from("Q", m, 1032)[0]
            if tail < head:
                out.append(self._read(m, self.page + tail % size, head - tail, size))
            struct.pack_into("Q", m, 1032, head)
        return out

    def records(self, chunk: bytes) -> tuple[list[tuple[float, bytes]], int, int]:
        """``(time, raw record)`` for each sample in a chunk of :meth:`read_raw` (time in
        CLOCK_REALTIME seconds), how many records the kernel dropped there (its buffer full), and
        how many times it throttled the event (perf_event_max_sample_rate: samples not written
        until the CPU's next tick, which an idle CPU may not have for a while)."""
        events: list[tuple[float, bytes]] = []
        lost = throttled = off = 0
        while off < len(chunk):
            rtype, _, rsize = _HEADER.unpack_from(chunk, off)
            if rtype == PERF_RECORD_SAMPLE:
                t, raw_size = _SAMPLE.unpack_from(chunk, off + 8)
                events.append((t / 1e9 + self.offset_at(t / 1e9), chunk[off + 20:off + 20 + raw_size]))
            elif rtype == PERF_RECORD_LOST:
                lost += struct.unpack_from("QQ", chunk, off + 8)[1]
            elif rtype == PERF_RECORD_THROTTLE:
                throttled += 1
            off += rsize
        return events, lost, throttled

    def _read(self, m, off: int, n: int, size: int) -> bytes:
        end = self.page + size
        if off >= end:
            off -= size
        if off + n <= end:
            return m[off:off + n]
        first = end - off
        return m[off:end] + m[self.page:self.page + n - first]

    def close(self) -> None:
        for m in self.maps:
            m.close()
        for fd in self.fds:
            os.close(fd)
        self.maps, self.fds = [], []


def settle() -> None:
    """Wait until every tracepoint record whose writing began before this call is published.

    A CPU publishes a record (moves its buffer's ``data_head``) only once it has written it,
    with preemption disabled; a drain that reads while another CPU is inside such a write leaves
    that record for later.  In a VM the host can deschedule that vCPU mid-write for
    milliseconds, and a lab may also see a change's effect before its record is written
    (``tcp_done_with_error()`` sets the socket's error, which poll() reports, then closes it,
    which fires the tracepoint).  An RCU grace period ends only when every CPU has left the
    preemption-disabled regions it was in: ``membarrier(MEMBARRIER_CMD_GLOBAL)`` waits for one
    (``synchronize_rcu()``, 8-16 ms here).  Called before a capture's last drain.  Where the
    call is refused (nohz_full CPUs), nothing can be waited for and this returns.  (It does not
    explain every gap: docs/kernels.md.)"""
    nr = NR_MEMBARRIER.get(platform.machine())
    if nr is not None:
        _libc.syscall(nr, MEMBARRIER_CMD_GLOBAL, 0, 0)


class Subscription:
    """The records of some local addresses (a topology's) from :meth:`TraceLog.subscribe` until
    :meth:`close`."""

    def __init__(self, log: "TraceLog", addresses: set[str]):
        self.log, self.addresses = log, set(addresses)
        self.chunks: list[bytes] = []    # raw, split and parsed by close()
        self.lost = self.throttled = 0
        self.foreign = 0            # records of other sockets of the machine seen meanwhile

    def close(self) -> list:
        """Stop; the records in time order.  Raises CaptureIncomplete if the kernel dropped
        records meanwhile (they might have been these addresses')."""
        self.log.unsubscribe(self)
        events = []
        reader, local_address, parse = self.log.reader, self.log.local_address, self.log.parse
        for chunk in self.chunks:
            records, lost, throttled = reader.records(chunk)
            self.lost += lost
            self.throttled += throttled
            for t, raw in records:
                if local_address(raw) in self.addresses:
                    events.append(parse(t, raw))
                else:
                    self.foreign += 1
        self.chunks = []
        if self.lost:
            raise CaptureIncomplete(f"the kernel dropped {self.lost} records of {reader.tracepoint} "
                                    f"(per-CPU buffer of {reader.pages} pages full)")
        if self.throttled:
            raise CaptureIncomplete(f"the kernel throttled {reader.tracepoint} {self.throttled} time(s) "
                                    "(kernel.perf_event_max_sample_rate): samples were not written meanwhile")
        return sorted(events, key=lambda e: e.time)


class TraceLog:
    """One :class:`TracepointReader` per tracepoint and process, opened at the first subscription
    and kept until the process exits (opening a tracepoint costs tens of milliseconds: the kernel
    patches it in).  A reader thread copies the per-CPU buffers out at least every 50 ms, so a
    long lab on a busy machine never fills them; each subscription splits and parses what it was
    handed when it closes, keeping only the records of its addresses.

    ``local_address(raw)`` gives a record's local address cheaply (most records may be other
    labs'); ``parse(time, raw)`` builds the record object (with ``.time``) for the ones kept."""

    def __init__(self, reader: TracepointReader, local_address: Callable[[bytes], str],
                 parse: Callable[[float, bytes], object]):
        self.reader, self.local_address, self.parse = reader, local_address, parse
        self.subs: list[Subscription] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"tcplab-{reader.tracepoint}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = select.poll()
        for fd in self.reader.fds:
            poller.register(fd, select.POLLIN)
        while True:
            poller.poll(DRAIN_EVERY * 1000)
            self.pump()

    def pump(self) -> None:
        with self.lock:
            chunks = self.reader.read_raw()
            for sub in self.subs:
                sub.chunks += chunks

    def subscribe(self, addresses: set[str]) -> Subscription:
        self.pump()          # what happened before belongs to nobody
        sub = Subscription(self, addresses)
        with self.lock:
            if not self.subs:
                self.reader.enable(True)
            self.subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.pump()
        with self.lock:
            if sub in self.subs:
                self.subs.remove(sub)
                if not self.subs:
                    self.reader.enable(False)


class LogFactory:
    """This process's :class:`TraceLog` of one tracepoint, made at the first call; raises
    Unsupported (the same reason every time) where the tracepoint cannot be read."""

    def __init__(self, make: Callable[[], TraceLog]):
        self.make, self.log, self.error = make, None, None
        self.lock = threading.Lock()

    def __call__(self) -> TraceLog:
        with self.lock:
            if self.log is None and self.error is None:
                try:
                    self.log = self.make()
                except Unsupported as exc:
                    self.error = exc
        if self.error is not None:
            raise self.error
        return self.log
