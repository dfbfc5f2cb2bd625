"""The kernel's own record of TCP state changes: the ``sock:inet_sock_set_state`` tracepoint,
read through ``perf_event_open`` (:mod:`tcplab.observe.perf`: nothing left in the kernel, the
captures' clock, attribution by the topology's addresses, no silent loss).

* **Attribution.**  ``tests/integration/test_states.py`` proves it with labs running at once on
  the same ports.
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

Where the kernel has no tracing (a container without perf events), :func:`state_log`
raises :class:`~tcplab.Unsupported` with the reason; labs that need the exact sequence skip, and
state checks fall back to polling sock_diag.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from ..errors import Unsupported
from .perf import LogFactory, TracepointReader, TraceLog

#: kernel state numbers (include/net/tcp_states.h) -> the names tcplab uses
NAMES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT_1", 5: "FIN_WAIT_2", 6: "TIME_WAIT",
         7: "CLOSED", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV"}
TRACEPOINT = "sock/inet_sock_set_state"
FIELDS = {"skaddr", "oldstate", "newstate", "sport", "dport", "family", "saddr", "daddr", "saddr_v6", "daddr_v6"}
PAGES = 64                      # data pages per CPU (256 KiB: ~2500 events)


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


def _make_log() -> TraceLog:
    reader = TracepointReader(TRACEPOINT, FIELDS, PAGES)
    f = reader.fields
    fam_off, v4, v6 = f["family"][0], f["saddr"][0], f["saddr_v6"][0]
    d4, d6 = f["daddr"][0], f["daddr_v6"][0]

    def get(raw: bytes, name: str, fmt: str):
        return struct.unpack_from(fmt, raw, f[name][0])[0]

    def local_address(raw: bytes) -> str:
        if struct.unpack_from("H", raw, fam_off)[0] == 10:
            return str(ipaddress.IPv6Address(raw[v6:v6 + 16]))
        return ".".join(map(str, raw[v4:v4 + 4]))

    def parse(t: float, raw: bytes) -> StateChange:
        six = get(raw, "family", "H") == 10
        dst = str(ipaddress.IPv6Address(raw[d6:d6 + 16])) if six else ".".join(map(str, raw[d4:d4 + 4]))
        return StateChange(t, NAMES.get(get(raw, "oldstate", "i"), "?"), NAMES.get(get(raw, "newstate", "i"), "?"),
                           6 if six else 4, (local_address(raw), get(raw, "sport", "H")), (dst, get(raw, "dport", "H")),
                           get(raw, "skaddr", "Q"))
    return TraceLog(reader, local_address, parse)


#: This process's log of state changes (``state_log().subscribe(addresses)``); raises Unsupported
#: where the kernel's state record cannot be read.
state_log = LogFactory(_make_log)


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


def textbook_steps(changes: list[StateChange], lingering: str | None = None, *, opened: float | None = None,
                   peer_fin: float | None = None) -> list[tuple[float, str]]:
    """``(time, state)`` for each state one socket went through, in the textbook's words and at
    the textbook's moments (RFC 9293's diagram); the states before its first logged change have
    time -inf.  What the kernel records differs in three places, put right here:

    * a listener's child is born when the handshake's third segment arrives (Linux keeps a
      request socket until then, which the tracepoint does not log; 6.18 logs the child as
      ``LISTEN -> SYN_RECV``, 6.1 not at all): it is in SYN_RECV from ``opened``, the arrival of
      the SYN it answered, when given;
    * a closing socket hands over to a timewait socket, and the tracepoint logs the full
      socket's ``-> CLOSED``.  ``lingering`` is what sock_diag shows for the tuple now: with
      ``TIME_WAIT`` that last change is ``-> TIME_WAIT``; with ``FIN_WAIT_2`` (an orphan's
      timewait socket still waiting for the peer's FIN) no change at all;
    * an orphan in FIN_WAIT_2 hands over before the peer's FIN arrives: it enters TIME_WAIT at
      ``peer_fin``, that FIN's arrival, when given, not at the hand-over.
    """
    if not changes:
        return []
    before = float("-inf")
    child = changes[0].old == "SYN_RECV" or (changes[0].old, changes[0].new) == ("LISTEN", "SYN_RECV")
    steps = [(before, "LISTEN")] if changes[0].old == "SYN_RECV" else []
    steps.append((before, changes[0].old))
    for i, c in enumerate(changes):
        new, at = c.new, c.time
        last = i == len(changes) - 1
        if last and new == "CLOSED" and lingering == "TIME_WAIT" and c.old in ("FIN_WAIT_1", "FIN_WAIT_2", "CLOSING"):
            new = "TIME_WAIT"
            if c.old == "FIN_WAIT_2" and peer_fin is not None and peer_fin > at:
                at = peer_fin
        elif last and new == "CLOSED" and lingering == "FIN_WAIT_2" and c.old == "FIN_WAIT_2":
            continue
        steps.append((at, new))
    if child and opened is not None:
        steps = [(opened if state == "SYN_RECV" and (t == before or opened < t) else t, state)
                 for t, state in steps]
    return steps


def textbook_path(changes: list[StateChange], lingering: str | None = None) -> list[str]:
    """The states of :func:`textbook_steps`, without their times."""
    return [state for _, state in textbook_steps(changes, lingering)]


class StateRecord(list):
    """One socket's state changes as the kernel logged them, in time order (a list of
    :class:`StateChange`), read after the capture: ``conn.states("client")``, ``cap.states(sock)``."""

    def __init__(self, changes=(), lingering: str | None = None):
        super().__init__(changes)
        #: what sock_diag showed for the socket's tuple when the capture stopped (a timewait socket)
        self.lingering = lingering

    def path(self, *, textbook: bool = True) -> list[str]:
        """The states the socket went through, e.g. ``["CLOSED", "SYN_SENT", "ESTABLISHED",
        "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT"]``.  ``textbook=False``: the kernel's own record,
        where a close into a timewait socket shows as ``-> CLOSED``."""
        if not textbook:
            return ([self[0].old] + [c.new for c in self]) if self else []
        return textbook_path(self, self.lingering)

    def steps(self) -> list[tuple[str, str]]:
        """Each change as (old, new), in the kernel's own words."""
        return [(c.old, c.new) for c in self]


def _state_change_on(cpu: int, address: str) -> int | None:
    """Runs in a host's namespace thread: on CPU ``cpu``, a listening socket on ``address`` opened
    and closed (two state changes, recorded in that CPU's buffer); its port, or None where this
    thread may not run there (a cpuset)."""
    import os
    import socket
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {cpu})       # returns once this thread runs there
    except OSError:
        return None
    try:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((address, 0))
            s.listen()
            return s.getsockname()[1]
    finally:
        os.sched_setaffinity(0, before)


def fence(sub, host, timeout: float = 5.0) -> set[tuple] | None:
    """Make the record of ``sub`` complete up to now, on every CPU: a state change of tcplab's own
    (a listener opened and closed on ``host``'s address) on each online CPU, then drains until
    each one's record is read.  A CPU publishes its records in the order it wrote them, so once
    its last is read every earlier one is too, however late it was published (a vCPU the host
    descheduled mid-write).  Returns the listeners' local ``(address, port)`` (their records are
    tcplab's, not the lab's), or None where a CPU could not be used (then nothing is proven this
    way).  Raises CaptureIncomplete if a CPU's record never arrives."""
    from ..errors import CaptureIncomplete, WaitTimeout
    from ..wait import until
    from .perf import _online_cpus
    address = host.addr(4)
    ports = {}
    for cpu in _online_cpus():
        port = host.ns.run(_state_change_on, cpu, address)
        if port is None:
            return None
        ports[port] = cpu
    log, seen, read = sub.log, set(), [0]

    def all_read() -> bool:
        log.pump()
        for chunk in sub.chunks[read[0]:]:      # each chunk parsed once, as it arrives
            for t, raw in log.reader.records(chunk)[0]:
                if log.local_address(raw) == address:
                    e = log.parse(t, raw)
                    if e.local[1] in ports and e.new == "CLOSED":
                        seen.add(e.local[1])
        read[0] = len(sub.chunks)
        return seen == set(ports)
    try:
        until(all_read, timeout, "every CPU's state record to be read")
    except WaitTimeout:
        raise CaptureIncomplete(f"the kernel's state record did not arrive from every CPU within {timeout:g} s "
                                f"(tcplab's own changes on CPUs {sorted(ports.values())})") from None
    return {(address, port) for port in ports}
