"""The trace model: TCP segments grouped per connection, with absolute and relative numbers.

A :class:`Trace` is built from the captures at both ends.  The *exchange* of a connection is what
each side **sent** (taken from the sender's own capture), in time order; what each side
**received** comes from the receiver's capture.  A segment sent but never received was lost on the
wire, and :meth:`Connection.lost` lists those.

Two notations (see :meth:`Connection.line` and :meth:`Connection.tcpdump`):

* packetdrill style, relative to each side's ISN: ``> S 0:0(0)``, ``< S. 0:0(0) ack 1``,
  ``> . 1:1(0) ack 1``; ``>`` is client to server (the side that sent the first SYN), ``<`` the
  other way;
* tcpdump style, absolute or relative: ``IP 198.18.0.1.3337 > 198.18.0.2.7788: S 3626544836:3626544836(0)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import TcplabError
from ..errors import ExpectationFailed
from .expect import Expectation, Failure, Mismatch, Seen, parse_line
from .states import StateRecord
from ..notation import MOD, flags_from_bits, letters, render_options

class Segments(list):
    """Segments of one connection: a list, printed as the ladder numbers them, in the notation
    (``#5 0.212s > P. 1:1449(1448) ack 1``), never as raw records with absolute numbers."""

    def __init__(self, conn, segments):
        super().__init__(segments)
        self.conn = conn

    def __repr__(self) -> str:
        if not self:
            return "[]"
        conn = self.conn
        t0 = conn.segments[0].time if conn.segments else 0.0
        index = {id(s): i for i, s in enumerate(conn.segments)}
        rows = [f"#{index[id(s)] + 1} {s.time - t0:.3f}s {conn.line(s)}" if id(s) in index else conn.line(s)
                for s in self]
        return "[" + ", ".join(rows) + "]"

    __str__ = __repr__


@dataclass(frozen=True)
class Segment:
    """One TCP segment as a capture saw it."""
    time: float
    family: int
    src: str
    sport: int
    dst: str
    dport: int
    flags: frozenset
    seq: int
    ack: int
    win: int
    length: int
    urgptr: int = 0
    options: tuple = ()
    payload: bytes = b""

    @property
    def letters(self) -> str:
        return letters(self.flags)

    @property
    def end(self) -> int:
        return (self.seq + self.length) % MOD

    def key(self) -> tuple | bytes:
        """What identifies one transmission across both captures (TS val makes copies distinct).
        Segments parsed from raw frames use their addresses, TCP header and payload bytes, whose
        hash Python caches (the bulk path); others a tuple of their fields."""
        raw = self.__dict__.get("_key")
        if raw is not None:
            return raw
        return (self.src, self.sport, self.dst, self.dport, self.flags, self.seq, self.ack, self.win,
                self.length, self.options, self.payload)

    @classmethod
    def from_scapy(cls, pkt: Any) -> "Segment | None":
        from scapy.layers.inet import IP, TCP
        from scapy.layers.inet6 import IPv6
        if TCP not in pkt:
            return None
        if IP in pkt:
            ip, fam = pkt[IP], 4
            length = ip.len - ip.ihl * 4 - pkt[TCP].dataofs * 4
        elif IPv6 in pkt:
            ip, fam = pkt[IPv6], 6
            length = ip.plen - pkt[TCP].dataofs * 4  # no extension headers on tcplab's links
        else:
            return None
        tcp = pkt[TCP]
        payload = bytes(tcp.payload)[:max(length, 0)]
        return cls(time=float(pkt.time), family=fam, src=ip.src, sport=tcp.sport, dst=ip.dst,
                   dport=tcp.dport, flags=flags_from_bits(int(tcp.flags)), seq=tcp.seq, ack=tcp.ack,
                   win=tcp.window, length=max(length, 0), urgptr=tcp.urgptr,
                   options=tuple((n, v) for n, v in tcp.options), payload=payload)


def _segments(packets: Iterable[Any]) -> list[Segment]:
    """The TCP segments among captured packets (anything else is dropped)."""
    return [s for s in map(Segment.from_scapy, packets) if s is not None]


def load_scapy_layers() -> None:
    """Register Ethernet, IPv4, IPv6 and TCP with Scapy (imported lazily: it takes ~0.7 s)."""
    import scapy.layers.inet  # noqa: F401
    import scapy.layers.inet6  # noqa: F401
    import scapy.layers.l2  # noqa: F401


def _read_pcap(path: Any) -> list:
    from scapy.utils import rdpcap
    load_scapy_layers()
    return list(rdpcap(str(path)))


def _endpoint(ip: str, port: int, family: int) -> str:
    return f"[{ip}]:{port}" if family == 6 else f"{ip}:{port}"


class Connection:
    """The segments of one 4-tuple, oriented client (first SYN's sender) -> server."""

    def __init__(self, client: tuple[str, int], server: tuple[str, int], sent: list[Segment],
                 received: list[Segment] | None, pcaps: dict[str, Path] | None = None, kernel=None):
        self.client = client
        self.server = server
        self.segments = sorted(sent, key=lambda s: s.time)
        self.received = sorted(received, key=lambda s: s.time) if received is not None else None
        self.pcaps = dict(pcaps or {})
        self.family = self.segments[0].family if self.segments else 4
        # each side's ISN: its first SYN's seq, else its first segment's (one pass)
        first: dict[str, int] = {}
        syn: dict[str, int] = {}
        for s in self.segments:
            side = "client" if (s.src, s.sport) == client else "server"
            first.setdefault(side, s.seq)
            if side not in syn and "SYN" in s.flags:
                syn[side] = s.seq
        self.isn = {side: syn.get(side, first.get(side)) for side in ("client", "server")}
        self._lost = self._find_lost()
        from .kernel import KernelRecord
        self.kernel = kernel if kernel is not None else KernelRecord(
            "this trace was not recorded by a topology's capture")

    # -- the kernel's state changes (recorded by a topology's capture) ----------------------

    def states(self, side: str | None = None):
        """The state changes as the kernel logged them (``sock:inet_sock_set_state``), in time
        order: ``{"client": StateRecord, "server": StateRecord}``, or with ``side`` that side's
        :class:`~tcplab.observe.states.StateRecord` alone (its ``path()`` gives the states in
        the textbook's words, ``steps()`` each change as (old, new)).  Raises :class:`~tcplab.Unsupported` where the kernel has no tracing, and
        CaptureIncomplete where what is asked for has a gap: a record is complete or an error,
        never a sequence with a hole.  A lab that asserts one side reads that side: a gap in the
        other side's record is then not its concern."""
        out = {s: StateRecord(self._changes(s), self._lingering(s)) for s in ("client", "server")}
        from .states import gaps
        broken = gaps(out[side]) if side else gaps(out["client"]) + gaps(out["server"])
        if broken:
            from ..errors import CaptureIncomplete
            raise CaptureIncomplete("the kernel's record of state changes has gaps, so no sequence is given: "
                                    + "; ".join(broken))
        return out[side] if side else out

    def last_change(self, side: str):
        """``side``'s last recorded state change.  It needs no complete record: a change the lab
        asserts is either in it or the assertion fails.  (The record's completeness is proven
        for the reader: every CPU's buffer is read past a change of tcplab's own made after the
        lab's; yet Linux 6.18 under this VM has, once in about 40 runs of the RST labs, not
        recorded an IPv6 socket's ``FIN_WAIT_1 -> FIN_WAIT_2``: docs/kernels.md.)"""
        mine = self._changes(side)
        if not mine:
            from ..errors import CaptureIncomplete
            raise CaptureIncomplete(f"the kernel recorded no state change of the {side}'s socket")
        return mine[-1]

    def _changes(self, side: str) -> list:
        """``side``'s socket's state changes as recorded, gaps and all (Unsupported where none)."""
        local = self.client if side == "client" else self.server
        return [e for e in self.kernel.states_between(self.client, self.server) if e.local == local]

    def _lingering(self, side: str) -> str | None:
        """What sock_diag showed for ``side``'s tuple when the capture stopped, if a timewait
        socket held it."""
        pair = (self.client, self.server) if side == "client" else (self.server, self.client)
        return self.kernel.timewait.get(pair)

    def sender(self, side: str = "client"):
        """The kernel's view of ``side`` as a sender, sample by sample: cwnd, ssthresh, srtt, the
        peer's window (a :class:`~tcplab.observe.sender.SenderRecord`, from ``tcp:tcp_probe`` on
        every segment it received, or TCP_INFO sampled where perf events are missing: see its
        ``sampled``).  Raises Unsupported/CaptureIncomplete with the reason where there is none."""
        if side not in ("client", "server"):
            from ..errors import ConfigError
            raise ConfigError(f"sender({side!r}): the side is 'client' or 'server'")
        local, remote = (self.client, self.server) if side == "client" else (self.server, self.client)
        return self.kernel.sender(local, remote)

    # -- orientation and numbers --------------------------------------------------------
    def side(self, seg: Segment) -> str:
        return "client" if (seg.src, seg.sport) == self.client else "server"

    def arrow(self, seg: Segment) -> str:
        return ">" if self.side(seg) == "client" else "<"

    def rel_seq(self, seg: Segment) -> int:
        isn = self.isn[self.side(seg)]
        return (seg.seq - isn) % MOD if isn is not None else seg.seq

    def seen(self) -> list[Seen]:
        """The segments as an expectation reads them: sender and relative numbers."""
        return [Seen(seg, self.side(seg), self.rel_seq(seg), self.rel_ack(seg)) for seg in self.segments]

    def rel_ack(self, seg: Segment) -> int | None:
        if "ACK" not in seg.flags:
            return None
        isn = self.isn["server" if self.side(seg) == "client" else "client"]
        return (seg.ack - isn) % MOD if isn is not None else seg.ack

    # -- loss -------------------------------------------------------------------------
    def _find_lost(self) -> set[int] | None:
        """Indices of sent segments with no matching arrival at the peer (None: unknown)."""
        if self.received is None:
            return None
        arrivals: dict[tuple, list[float]] = {}
        for r in self.received:
            k = r.key()
            if k in arrivals:
                arrivals[k].append(r.time)
            else:
                arrivals[k] = [r.time]
        lost = set()
        by_key: dict[tuple, list[int]] = {}
        for i, s in enumerate(self.segments):
            k = s.key()
            if k in by_key:
                by_key[k].append(i)
            else:
                by_key[k] = [i]
        for key, idxs in by_key.items():
            times = arrivals.get(key)
            if len(idxs) == 1 and times and self.segments[idxs[0]].time <= times[0] + 1e-3:
                continue  # the common case: sent once, arrived
            unmatched = list(idxs)
            for t in arrivals.get(key, []):
                # the copy that arrived is the latest one sent before it arrived
                cands = [i for i in unmatched if self.segments[i].time <= t + 1e-3]
                pick = cands[-1] if cands else (unmatched[0] if unmatched else None)
                if pick is not None:
                    unmatched.remove(pick)
            lost.update(unmatched)
        return lost

    def lost(self) -> "Segments":
        """Segments that were sent but never reached the peer's capture (a list that prints in
        the notation, numbered and timed as in the ladder)."""
        if self._lost is None:
            raise TcplabError("this trace has only one capture, so losses cannot be told apart")
        return Segments(self, [s for i, s in enumerate(self.segments) if i in self._lost])

    def is_lost(self, index: int) -> bool:
        return bool(self._lost) and index in self._lost

    # -- rendering ---------------------------------------------------------------------
    def line(self, seg: Segment, *, win: bool = False, options: bool = False) -> str:
        """packetdrill-style relative notation, e.g. ``< S. 0:0(0) ack 1``."""
        rs = self.rel_seq(seg)
        text = f"{self.arrow(seg)} {seg.letters} {rs}:{(rs + seg.length) % MOD}({seg.length})"
        ra = self.rel_ack(seg)
        if ra is not None:
            text += f" ack {ra}"
        if win:
            text += f" win {seg.win}"
        if options and seg.options:
            text += f" <{render_options(seg.options)}>"
        return text

    def script(self, **kw: Any) -> str:
        return "\n".join(self.line(s, **kw) for s in self.segments)

    def tcpdump(self, seg: Segment, *, absolute: bool = False) -> str:
        """tcpdump's classic one-line form (``S x:x(0)``, ``S y:y(0) ack x+1``, ``. ack 1``).

        Relative mode does what tcpdump does: SYNs print raw numbers, every later segment prints
        seq and ack relative to the ISNs.  Absolute mode prints raw numbers throughout."""
        proto = "IP6" if seg.family == 6 else "IP"
        text = f"{proto} {seg.src}.{seg.sport} > {seg.dst}.{seg.dport}: "
        text += seg.letters.replace(".", "") or "."
        raw = absolute or "SYN" in seg.flags
        seq = seg.seq if raw else self.rel_seq(seg)
        if seg.length or seg.flags & {"SYN", "FIN", "RST"}:
            text += f" {seq}:{(seq + seg.length) % MOD}({seg.length})"
        if "ACK" in seg.flags:
            text += f" ack {seg.ack if raw else self.rel_ack(seg)}"
        text += f" win {seg.win}"
        if seg.options:
            text += f" <{render_options(seg.options)}>"
        return text

    def tcpdump_lines(self, *, absolute: bool = False) -> str:
        return "\n".join(self.tcpdump(s, absolute=absolute) for s in self.segments)

    def ladder(self, notes: dict[int, str] | None = None, missing: str | None = None, *,
               textbook: bool = True) -> str:
        """An arrow diagram of the exchange; ``notes`` puts text beside rows (by index); the
        states between the rows are the textbook's (``textbook=False``: the kernel's record)."""
        notes = notes or {}
        labels = [self.line(s)[2:] for s in self.segments]
        w = max([len(x) for x in labels] + [24])
        t0 = self.segments[0].time if self.segments else 0.0
        left = f"client {_endpoint(*self.client, self.family)}"
        right = f"server {_endpoint(*self.server, self.family)}"
        rows = [f"{'':13}{left:<{w + 10}}{right}"]
        marks = self.state_marks(textbook=textbook)

        def state_row(upto: float | None) -> None:
            """The state changes up to ``upto`` (None: all that are left), one row per change."""
            while marks and (upto is None or marks[0][0] <= upto):
                _, side, state = marks.pop(0)
                text = f"[{state}]"
                rows.append(f"{'':14}{text}" if side == "client" else f"{'':14}{text:>{w + 13}}")
        for i, (s, lab) in enumerate(zip(self.segments, labels)):
            state_row(s.time)
            lost = self.is_lost(i)
            if self.side(s) == "client":
                arrow = f"|---- {lab:<{w}} " + ("--x  |" if lost else "---->|")
            else:
                arrow = ("|  x- " if lost else "|<--- ") + f"{lab:<{w}} -----|"
            row = f"{i + 1:>4} {s.time - t0:7.3f}s {arrow}"
            extra = []
            if lost:
                extra.append("lost on the wire")
            if i in notes:
                extra.append(notes[i])
            if extra:
                row += "  << " + "; ".join(extra)
            rows.append(row)
        state_row(None)
        if missing:
            rows.append(f"{'':13}{'(no more segments)':<{w + 12}}  << {missing}")
        return "\n".join(rows)

    def state_marks(self, *, textbook: bool = True) -> list[tuple[float, str, str]]:
        """``(time, side, state)`` for each side's state changes (the first at -inf: the state
        before the exchange), for the ladders; empty where the kernel's record is not available or
        has gaps.  In the textbook's words at the textbook's moments (a server in SYN_RECV from
        the SYN's arrival, TIME_WAIT from the peer's FIN's: :func:`~tcplab.observe.states.textbook_steps`);
        ``textbook=False``: the kernel's own record, as it logged it."""
        from .states import textbook_steps
        states = {}
        for side in ("client", "server"):      # a side whose record has a gap is left out
            try:
                states[side] = self.states(side)
            except TcplabError:
                continue
        if not textbook:
            out = [(float("-inf"), side, ch[0].old) for side, ch in states.items() if ch]
            out += [(c.time, side, c.new) for side, ch in states.items() for c in ch]
        else:
            out = [(t, side, state) for side, changes in states.items()
                   for t, state in textbook_steps(changes, self._lingering(side), opened=self._arrival(side, "SYN"),
                                                  peer_fin=self._arrival(side, "FIN"))]
        return sorted(out, key=lambda m: (m[0], m[1]))

    def _arrival(self, side: str, flag: str) -> float | None:
        """When the other side's first segment with ``flag`` (SYN, FIN) reached ``side``: its
        arrival in ``side``'s capture, else (one capture) its sending."""
        arrived = self.received if self.received is not None else self.segments
        return next((s.time for s in arrived if self.side(s) != side and flag in s.flags), None)

    def pcap_note(self) -> str:
        return "capture: " + ", ".join(str(p) for p in self.pcaps.values()) if self.pcaps else "capture: (none saved)"

    # -- expectations ----------------------------------------------------------------
    def expect(self, script: str, *, complete: bool = True) -> None:
        """Assert the exchange matches ``script``; see :mod:`tcplab.observe.expect` for the notation.
        A mismatch raises :class:`tcplab.ExpectationFailed`: its text is the report below, its
        ``mismatch`` the typed record reports draw from."""
        __tracebackhide__ = True  # pytest: point at the lab's line, not at tcplab
        exp = Expectation.parse(script)
        f = exp.match(self.seen(), complete)
        if f is not None:
            raise ExpectationFailed(self.mismatch_report(f, exp.text), Mismatch(self, exp.text, f))

    def compare(self, line: str, seg: Segment) -> list[tuple[str, str, str]]:
        """How ``seg`` differs from one expected ``line`` (``"> . 1:1(0) ack 1"``): (field,
        expected, actual) for each field that differs (direction, flags, seq, length, ack, win,
        options); empty when it matches.  For partial credit, field by field."""
        return parse_line(line, 1).differences(Seen(seg, self.side(seg), self.rel_seq(seg), self.rel_ack(seg)))

    def mismatch_report(self, f: Failure, script: str | None = None) -> str:
        """The text a user sees when the exchange departs from ``script`` at ``f`` (pinned by tests)."""
        segs = self.segments
        out = []
        notes, missing = f.marks()
        if f.index >= len(segs):
            out.append(f"segment {f.index + 1} is missing: the exchange ended after {len(segs)} segment(s)")
            out.append(f"  expected: {f.spec.render() if f.spec else '(nothing)'}")
            out.append("  actual:   (no segment)")
        elif f.spec is None:
            s = segs[f.index]
            out.append(f"segment {f.index + 1} ({self._who(s)}) is unexpected: the expected exchange ended "
                       f"before it")
            out.append("  expected: (no more segments)")
            out.append(f"  actual:   {self.line(s)}")
        else:
            s = segs[f.index]
            what = "; ".join(f"{fld} expected {e} but saw {a}" for fld, e, a in f.diffs)
            out.append(f"segment {f.index + 1} ({self._who(s)}) differs: {what}")
            show = dict(win=f.spec.win is not None, options=f.spec.options is not None)
            out.append(f"  expected: {f.spec.render()}")
            out.append(f"  actual:   {self.line(s, **show)}")
        out.extend("  " + row for row in self.ladder(notes, missing).splitlines())
        if script is not None:
            out.append("  expected exchange:")
            out.extend("    " + ln.strip() for ln in script.strip().splitlines() if ln.strip())
        out.append("  " + self.pcap_note())
        return "\n".join(out)

    def _who(self, s: Segment) -> str:
        return "client > server" if self.side(s) == "client" else "server > client"

    def __len__(self) -> int:
        return len(self.segments)

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)

    def __repr__(self) -> str:
        return f"<Connection {self.client} -> {self.server}: {len(self.segments)} segments>"


class Trace:
    """All TCP connections seen by one capture session."""

    def __init__(self, connections: list[Connection], pcaps: dict[str, Path] | None = None, kernel=None):
        from .kernel import KernelRecord
        self.connections_list = connections
        self.pcaps = dict(pcaps or {})
        self.kernel = kernel if kernel is not None else KernelRecord("this trace was not recorded by a topology's capture")

    @classmethod
    def from_segments(cls, sent: list[Segment], received: list[Segment] | None = None,
                      pcaps: dict[str, Path] | None = None, kernel=None) -> "Trace":
        def four_tuple(s: Segment) -> tuple:  # the same for both directions
            a, b = (s.src, s.sport), (s.dst, s.dport)
            return (a, b) if a <= b else (b, a)
        groups: dict[tuple, list[Segment]] = {}
        for s in sorted(sent, key=lambda s: s.time):
            groups.setdefault(four_tuple(s), []).append(s)
        rgroups: dict[tuple, list[Segment]] = {}
        for s in received or []:
            rgroups.setdefault(four_tuple(s), []).append(s)
        conns = []
        for k, segs in groups.items():
            first_syn = next((s for s in segs if s.flags & {"SYN", "ACK"} == {"SYN"}), segs[0])
            client = (first_syn.src, first_syn.sport)
            server = (first_syn.dst, first_syn.dport)
            conns.append(Connection(client, server, segs,
                                    rgroups.get(k, []) if received is not None else None, pcaps, kernel))
        conns.sort(key=lambda c: c.segments[0].time)
        return cls(conns, pcaps, kernel)

    @classmethod
    def from_views(cls, views: dict[str, tuple[list, set[str]]], pcaps: dict[str, Path], kernel=None) -> "Trace":
        """Build from each host's own capture: ``{name: (packets, the host's addresses)}``.  A
        host's capture supplies what it sent and what it received."""
        sent, received = [], []
        for packets, mine in views.values():
            for seg in _segments(packets):
                (sent if seg.src in mine else received if seg.dst in mine else []).append(seg)
        return cls.from_segments(sent, received, pcaps, kernel)

    @classmethod
    def from_captures(cls, packets: dict[str, list], topo: Any, pcaps: dict[str, Path], kernel=None) -> "Trace":
        """Build from per-host packet lists (``{"client": [...], "server": [...]}``)."""
        return cls.from_views({h.name: (packets.get(h.name, []), {h.addr(4), h.addr(6)}) for h in topo},
                              pcaps, kernel)

    @classmethod
    def from_pcaps(cls, sender_side: dict[str, Any], endpoints: dict[str, set[str]]) -> "Trace":
        """Offline: ``sender_side`` maps host name to a pcap path; ``endpoints`` maps host name to
        its IP addresses."""
        return cls.from_views({n: (_read_pcap(p), endpoints[n]) for n, p in sender_side.items()},
                              {n: Path(p) for n, p in sender_side.items()})

    @classmethod
    def from_pcap(cls, path: Any) -> "Trace":
        """Offline, one capture holding both directions (no loss information)."""
        return cls.from_segments(_segments(_read_pcap(path)), None, {"pcap": Path(path)})

    def connections(self, *, port: int | None = None) -> list[Connection]:
        return [c for c in self.connections_list if port is None or port in (c.server[1], c.client[1])]

    def connection(self, *, port: int | None = None, index: int | None = None) -> Connection:
        """The one connection to/from ``port`` (or the ``index``-th of them)."""
        conns = self.connections(port=port)
        if index is not None:
            if index >= len(conns):
                raise TcplabError(f"connection index {index} out of range: the trace has {len(conns)} "
                                  f"connection(s) on port {port}")
            return conns[index]
        if len(conns) != 1:
            listing = "\n  ".join(repr(c) for c in self.connections_list) or "(no TCP segments captured)"
            raise TcplabError(f"expected exactly one connection on port {port}, found {len(conns)}; pass "
                              f"index= to choose. Connections seen:\n  {listing}\n  capture: "
                              + ", ".join(str(p) for p in self.pcaps.values()))
        return conns[0]
