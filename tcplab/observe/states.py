"""The kernel's own record of TCP state changes: the ``sock:inet_sock_set_state`` tracepoint,
read through ``perf_event_open``.

How, and why this way:

* **Nothing is left in the kernel.**  The tracepoint is opened as a perf event per CPU; the fds
  belong to this process, so the kernel removes them when it exits, even by SIGKILL.  (A tracefs
  *instance* would outlive the process.)  tracefs is read once, for the tracepoint's id and record
  layout, from a private mount namespace of a short-lived ``unshare`` child: no mount appears in
  the machine's namespace.
* **The captures' clock.**  Packet sockets stamp frames with CLOCK_REALTIME; perf refuses that
  clock for tracepoints, so events are stamped with CLOCK_MONOTONIC and shifted by the offset
  between the two clocks measured when recording starts (a few microseconds of error), so
  states and segments share one time line.
* **Attribution.**  The tracepoint fires for every socket of the machine and carries no network
  namespace.  Each live :class:`~tcplab.Topology` has a subnet of its own (``Subnet``), so an event
  belongs to a topology when its source address is one of the topology's; ports alone would not do
  (parallel labs use the same ports).  ``tests/integration/test_states.py`` proves it with labs
  running at once on the same ports.
* **Linux's own shapes.**  TIME_WAIT never appears: the full socket is replaced by a timewait
  socket and the tracepoint logs ``FIN_WAIT_2 -> CLOSED`` (or ``CLOSING``/``FIN_WAIT_1 ->
  CLOSED``).  A half-open connection is a request socket (NEW_SYN_RECV) that the tracepoint does
  not log; the child socket appears when the handshake's ACK arrives, as ``LISTEN -> SYN_RECV ->
  ESTABLISHED`` (6.18; Linux 6.1 logs only ``SYN_RECV -> ESTABLISHED``, and the textbook path
  starts it from LISTEN all the same).  :func:`textbook_path` maps these to the textbook's names, with the reason.

A record with a gap is never passed off as a sequence: :meth:`Connection.states` raises
CaptureIncomplete naming the gap (changes made while processing a segment released by a qdisc
timer, as with ``Topology.cross_next()``, are sometimes not delivered; labs that delay segments
read states by polling sock_diag instead, see ``tcplab.lab.diag.StatePoller``).

Where the kernel has no tracing (a container without perf events), :func:`open_recorder`
raises :class:`~tcplab.Unsupported` with the reason; labs that need the exact sequence skip, and
state checks fall back to polling sock_diag.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import re
import struct
import subprocess
from dataclasses import dataclass
from functools import lru_cache

from ..errors import CaptureIncomplete, Unsupported

#: kernel state numbers (include/net/tcp_states.h) -> the names tcplab uses
NAMES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT_1", 5: "FIN_WAIT_2", 6: "TIME_WAIT",
         7: "CLOSED", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV"}
TRACEPOINT = "sock/inet_sock_set_state"
PERF_TYPE_TRACEPOINT = 2
PERF_SAMPLE_TIME, PERF_SAMPLE_RAW = 1 << 2, 1 << 10
PERF_RECORD_LOST, PERF_RECORD_SAMPLE = 2, 9
USE_CLOCKID = 1 << 25
CLOCK_MONOTONIC = 1
PERF_FLAG_FD_CLOEXEC = 8
NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}
PAGES = 64                      # data pages per CPU (256 KiB: ~2500 events)
WAKEUP_EVENTS = 32
DRAIN_EVERY = 0.05              # seconds: the reader drains at least this often


@dataclass(frozen=True)
class StateChange:
    """One state change of one socket, as the kernel logged it."""
    time: float                 # CLOCK_REALTIME seconds, like the captures' frame times
    old: str
    new: str
    family: int                 # 4 or 6
    local: tuple                # (address, port) of the socket
    remote: tuple
    sk: int                     # the socket's kernel address (tells sockets of one tuple apart)

    def __str__(self) -> str:
        return f"{self.old} -> {self.new}"


@lru_cache(maxsize=1)
def tracepoint_layout() -> tuple[int, dict[str, tuple[int, int]]]:
    """(id, {field: (offset, size)}) of the tracepoint, from tracefs (mounted, if it is not, in a
    private mount namespace of a child that exits at once)."""
    base = "/sys/kernel/tracing/events/" + TRACEPOINT
    if os.path.isfile(base + "/id"):
        text = open(base + "/id").read() + open(base + "/format").read()
    else:
        try:
            r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                f"mount -t tracefs nodev /sys/kernel/tracing && cat {base}/id {base}/format"],
                               capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Unsupported(f"cannot read the state tracepoint's format (unshare/mount tracefs: {exc})") from None
        if r.returncode != 0:
            first = (r.stderr.strip() or "mount failed").splitlines()[0]
            raise Unsupported(f"cannot read the state tracepoint's format ({first})")
        text = r.stdout
    tp_id = int(text.split()[0])
    fields = {m[1]: (int(m[2]), int(m[3])) for m in
              re.finditer(r"field:[^;]*?(\w+)(?:\[\d+\])?;\s*offset:(\d+);\s*size:(\d+);", text)}
    need = {"skaddr", "oldstate", "newstate", "sport", "dport", "family", "saddr", "daddr", "saddr_v6", "daddr_v6"}
    if not need <= set(fields):
        raise Unsupported(f"the state tracepoint lacks fields {sorted(need - set(fields))} on this kernel")
    return tp_id, fields


def _attr(tp_id: int) -> bytes:
    """struct perf_event_attr (version 5, 112 bytes)."""
    a = bytearray(112)
    struct.pack_into("IIQQQQQ", a, 0, PERF_TYPE_TRACEPOINT, 112, tp_id, 1, PERF_SAMPLE_TIME | PERF_SAMPLE_RAW,
                     0, USE_CLOCKID)
    struct.pack_into("I", a, 48, WAKEUP_EVENTS)     # wakeup_events: poll() readiness every N records
    struct.pack_into("i", a, 92, CLOCK_MONOTONIC)   # clockid (REALTIME is refused for tracepoints)
    return bytes(a)


_libc = ctypes.CDLL(None, use_errno=True)


def _online_cpus() -> list[int]:
    out = []
    for part in open("/sys/devices/system/cpu/online").read().strip().split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


class StateRecorder:
    """Records every TCP state change of the machine from construction to :meth:`close`;
    :meth:`read_new` returns what the kernel wrote since the last call."""

    def __init__(self):
        import platform
        nr = NR_PERF_EVENT_OPEN.get(platform.machine())
        if nr is None:
            raise Unsupported(f"the state timeline knows perf_event_open's number on x86_64 and aarch64, "
                              f"not {platform.machine()}")
        self.tp_id, self.fields = tracepoint_layout()
        attr = ctypes.create_string_buffer(_attr(self.tp_id), 112)
        self.fds: list[int] = []
        self.maps: list[mmap.mmap] = []
        self.page = mmap.PAGESIZE
        import time
        self.offset = min((time.time() - time.monotonic() for _ in range(5)), key=abs)
        try:
            for cpu in _online_cpus():
                fd = _libc.syscall(nr, attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
                if fd < 0:
                    err = ctypes.get_errno()
                    raise Unsupported(f"perf_event_open on the state tracepoint failed: {os.strerror(err)} "
                                      "(a container without perf events, or perf_event_paranoid)")
                self.fds.append(fd)
                self.maps.append(mmap.mmap(fd, (1 + PAGES) * self.page, mmap.MAP_SHARED,
                                           mmap.PROT_READ | mmap.PROT_WRITE))
        except BaseException:
            self.close()
            raise

    def read_new(self, parse: bool = True) -> tuple[list[StateChange], int]:
        """The records the kernel wrote since the last read, and how many it dropped.  With
        ``parse=False`` the records are only consumed (nobody wants them): nothing is returned."""
        size = PAGES * self.page
        events: list[StateChange] = []
        lost = 0
        for m in self.maps:
            head = struct.unpack_from("Q", m, 1024)[0]
            tail = struct.unpack_from("Q", m, 1032)[0]
            while parse and tail < head:
                off = self.page + tail % size
                hdr = self._read(m, off, 8, size)
                rtype, _, rsize = struct.unpack("IHH", hdr)
                body = self._read(m, off + 8, rsize - 8, size)
                if rtype == PERF_RECORD_SAMPLE:
                    t, raw_size = struct.unpack_from("QI", body, 0)
                    events.append(self._parse(t, body[12:12 + raw_size]))
                elif rtype == PERF_RECORD_LOST:
                    lost += struct.unpack_from("QQ", body, 0)[1]
                tail += rsize
            struct.pack_into("Q", m, 1032, head if not parse else tail)
        return events, lost

    def _read(self, m, off: int, n: int, size: int) -> bytes:
        end = self.page + size
        if off >= end:
            off -= size
        if off + n <= end:
            return m[off:off + n]
        first = end - off
        return m[off:end] + m[self.page:self.page + n - first]

    def _parse(self, t_ns: int, raw: bytes) -> StateChange:
        f = self.fields

        def get(name, fmt):
            off, _ = f[name]
            return struct.unpack_from(fmt, raw, off)[0]
        fam = get("family", "H")
        if fam == 10:
            import ipaddress
            src = str(ipaddress.IPv6Address(raw[f["saddr_v6"][0]:f["saddr_v6"][0] + 16]))
            dst = str(ipaddress.IPv6Address(raw[f["daddr_v6"][0]:f["daddr_v6"][0] + 16]))
        else:
            src = ".".join(map(str, raw[f["saddr"][0]:f["saddr"][0] + 4]))
            dst = ".".join(map(str, raw[f["daddr"][0]:f["daddr"][0] + 4]))
        return StateChange(t_ns / 1e9 + self.offset, NAMES.get(get("oldstate", "i"), "?"), NAMES.get(get("newstate", "i"), "?"),
                           6 if fam == 10 else 4, (src, get("sport", "H")), (dst, get("dport", "H")),
                           get("skaddr", "Q"))

    def close(self) -> None:
        for m in self.maps:
            m.close()
        for fd in self.fds:
            os.close(fd)
        self.maps, self.fds = [], []


class Subscription:
    """The state changes of some addresses (a topology's) from :meth:`StateLog.subscribe` until
    :meth:`close`."""

    def __init__(self, log: "StateLog", addresses: set[str]):
        self.log, self.addresses = log, set(addresses)
        self.events: list[StateChange] = []
        self.lost = 0
        self.foreign = 0            # changes of other sockets of the machine seen meanwhile

    def close(self) -> list[StateChange]:
        """Stop; the changes in time order.  Raises CaptureIncomplete if the kernel dropped records
        meanwhile (they might have been these addresses')."""
        self.log.unsubscribe(self)
        if self.lost:
            raise CaptureIncomplete(f"the kernel dropped {self.lost} state-change records (per-CPU buffer of "
                                    f"{PAGES} pages full)")
        return sorted(self.events, key=lambda e: e.time)


class StateLog:
    """One :class:`StateRecorder` per process, opened at the first subscription and kept until the
    process exits (opening the tracepoint costs tens of milliseconds: the kernel patches it in).
    A reader thread drains the per-CPU buffers at least every 50 ms, keeping only the changes of
    subscribed addresses, so a long lab on a busy machine never fills them."""

    def __init__(self):
        import threading
        self.rec = StateRecorder()
        self.subs: list[Subscription] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="tcplab-states", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import select
        poller = select.poll()
        for fd in self.rec.fds:
            poller.register(fd, select.POLLIN)
        while True:
            poller.poll(DRAIN_EVERY * 1000)
            self.pump()

    def pump(self) -> None:
        with self.lock:
            events, lost = self.rec.read_new(parse=bool(self.subs))
            for sub in self.subs:
                sub.lost += lost
                mine = [e for e in events if e.local[0] in sub.addresses]
                sub.events += mine
                sub.foreign += len(events) - len(mine)

    def subscribe(self, addresses: set[str]) -> Subscription:
        self.pump()          # what happened before belongs to nobody
        sub = Subscription(self, addresses)
        with self.lock:
            self.subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.pump()
        with self.lock:
            if sub in self.subs:
                self.subs.remove(sub)


_LOG: StateLog | None = None
_LOG_ERROR: Unsupported | None = None


def state_log() -> StateLog:
    """This process's :class:`StateLog`; raises Unsupported (the same reason every time) where the
    kernel's state record cannot be read."""
    global _LOG, _LOG_ERROR
    if _LOG is None and _LOG_ERROR is None:
        try:
            _LOG = StateLog()
        except Unsupported as exc:
            _LOG_ERROR = exc
    if _LOG_ERROR is not None:
        raise _LOG_ERROR
    return _LOG


def unavailable() -> str | None:
    """Why this process cannot read the kernel's state record, or None if it can (the report
    header and ``tcplab doctor`` say it once)."""
    try:
        state_log()
    except Unsupported as exc:
        return exc.reason
    return None


def gaps(changes: list[StateChange]) -> list[str]:
    """Where one socket's record breaks (a change that does not start where the previous one
    ended): the kernel did not deliver every change.  Measured: changes made while processing
    a segment that a qdisc timer released (tbf, netem delay) are sometimes missing."""
    out, last = [], {}
    for c in changes:
        prev = last.get(c.sk)
        if prev is not None and prev.new != c.old:
            out.append(f"{prev} then {c} ({c.local[0]}:{c.local[1]})")
        last[c.sk] = c
    return out


def textbook_steps(changes: list[StateChange], lingering: str | None = None) -> list[tuple[float, str]]:
    """``(time, state)`` for each state one socket went through, in the textbook's words; the
    states before its first logged change have time -inf.  ``lingering``: the state sock_diag
    shows for the tuple now, if a timewait socket holds it: then the kernel's last ``-> CLOSED``
    (the full socket giving way) is ``-> TIME_WAIT``, or, for an orphan's ``FIN_WAIT_2`` timewait
    socket, no change at all (the connection is still in FIN_WAIT_2)."""
    if not changes:
        return []
    before = float("-inf")
    # A child of a listener is born in SYN_RECV.  Linux 6.18 logs that as LISTEN -> SYN_RECV;
    # 6.1 logs nothing until SYN_RECV -> ESTABLISHED.  Either way it came from LISTEN.
    steps = [(before, "LISTEN")] if changes[0].old == "SYN_RECV" else []
    steps.append((before, changes[0].old))
    for i, c in enumerate(changes):
        new = c.new
        last = i == len(changes) - 1
        if last and new == "CLOSED" and lingering == "TIME_WAIT" and c.old in ("FIN_WAIT_1", "FIN_WAIT_2", "CLOSING"):
            new = "TIME_WAIT"
        elif last and new == "CLOSED" and lingering == "FIN_WAIT_2" and c.old == "FIN_WAIT_2":
            continue
        steps.append((c.time, new))
    return steps


def textbook_path(changes: list[StateChange], lingering: str | None = None) -> list[str]:
    """The states of :func:`textbook_steps`, without their times."""
    return [state for _, state in textbook_steps(changes, lingering)]
