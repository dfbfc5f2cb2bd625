"""Wireshark's TCP analysis flags, computed the way Wireshark computes them.

Most users trust Wireshark's expert information ("TCP Retransmission", "Dup ACK"...), so tcplab
uses its definitions (``tcp_analyze_sequence_number`` in Wireshark's packet-tcp.c, 4.0) rather
than its own: one capture, read in order, each direction with its next expected sequence number,
last ACK, last window and count of duplicate ACKs.  Per segment, in Wireshark's order:

* **zero_window_probe**: 1 byte at exactly the next expected sequence number while the other
  side's window is 0.  (Linux does not probe that way: its probe carries no data and repeats the
  byte *before* the next one, which Wireshark calls a keep-alive.  Those are counted apart, as
  ``linux_zero_window_probes``: keep-alives sent while the other side's window is 0.)
* **zero_window**: window 0 on a segment without SYN, FIN or RST.
* **keep_alive**: 0 or 1 byte starting one byte before the next expected sequence number.
* **window_update**: no data, same seq and ack as before, a different non-zero window.
* **duplicate_ack**: no data, same seq, ack and non-zero window as the previous segment of that
  direction (not a keep-alive's or a zero-window probe's ACK).
* **spurious_retransmission**: data the other side has already acknowledged, all of it;
  otherwise, for data (or SYN/FIN) that does not advance the sequence number:
  **fast_retransmission** when the other side has sent two or more duplicate ACKs for exactly
  this sequence number within the last 20 ms, **out_of_order** when it comes within the first
  round trip (Wireshark's iRTT, SYN to the first ACK; 3 ms if unknown) of the highest sequence
  seen and does not end there, else **retransmission**.  Wireshark counts spurious and fast
  retransmissions as retransmissions too (so does tcplab); out-of-order segments are not.

``tests/integration/test_analysis.py`` checks every count against tshark on captures made here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .trace import Segment

COUNTS = ("retransmissions", "fast_retransmissions", "spurious_retransmissions", "out_of_order",
          "duplicate_acks", "zero_windows", "zero_window_probes", "linux_zero_window_probes",
          "keep_alives", "window_updates")
FAST_RTX_WINDOW = 0.020
DEFAULT_OOO = 0.003


def _lt(a: int, b: int) -> bool:
    return ((a - b) & 0xFFFFFFFF) >= 0x80000000


def _gt(a: int, b: int) -> bool:
    return _lt(b, a)


@dataclass
class _Side:
    nextseq: int | None = None
    nextseq_time: float = 0.0
    lastack: int | None = None
    lastack_time: float = 0.0
    window: int | None = None
    dupacks: int = 0
    maxseqtobeacked: int | None = None
    last_flags: frozenset = frozenset()
    wscale: int | None = None


@dataclass
class Analysed:
    """One connection of a capture: its endpoints, the flags of each of its segments (in capture
    order, the same order as ``segments``) and the counts."""
    client: tuple
    server: tuple
    segments: list = field(default_factory=list)
    marks: list = field(default_factory=list)     # one set of flag names per segment

    def counts(self) -> dict[str, int]:
        names = {"retransmissions": "retransmission", "fast_retransmissions": "fast_retransmission",
                 "spurious_retransmissions": "spurious_retransmission", "out_of_order": "out_of_order",
                 "duplicate_acks": "duplicate_ack", "zero_windows": "zero_window",
                 "zero_window_probes": "zero_window_probe", "linux_zero_window_probes": "linux_zero_window_probe",
                 "keep_alives": "keep_alive", "window_updates": "window_update"}
        return {k: sum(1 for m in self.marks if names[k] in m) for k in COUNTS}

    def as_dict(self) -> dict:
        def ep(a):
            return f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}"
        return {"client": ep(self.client), "server": ep(self.server), **self.counts()}


def analyse(segments: list[Segment]) -> list[Analysed]:
    """Every TCP connection among ``segments`` (one capture, in capture order)."""
    conns: dict[tuple, Analysed] = {}
    state: dict[tuple, dict] = {}
    first_rtt: dict[tuple, float | None] = {}
    syn_time: dict[tuple, float] = {}
    for seg in segments:
        a, b = (seg.src, seg.sport), (seg.dst, seg.dport)
        key = (a, b) if (a, b) in conns else (b, a) if (b, a) in conns else None
        if key is None:
            # the client is the side that sent the first SYN without ACK, else the first sender
            client, server = (b, a) if seg.flags == {"SYN", "ACK"} else (a, b)
            key = (client, server)
            conns[key] = Analysed(client, server)
            state[key] = {client: _Side(), server: _Side()}
            first_rtt[key] = None
        conn = conns[key]
        fwd, rev = state[key][a], state[key][b]
        marks: set[str] = set()
        _analyse_one(seg, fwd, rev, marks, first_rtt[key])
        # the first round trip as Wireshark measures it (its iRTT): from the latest SYN to the
        # first segment with ACK and without SYN, at this capture point
        if "SYN" in seg.flags and "ACK" not in seg.flags:
            syn_time[key] = seg.time
        elif "ACK" in seg.flags and "SYN" not in seg.flags and key in syn_time and first_rtt[key] is None:
            first_rtt[key] = seg.time - syn_time[key]
        conn.segments.append(seg)
        conn.marks.append(marks)
    return list(conns.values())


def _analyse_one(seg: Segment, fwd: _Side, rev: _Side, marks: set, first_rtt: float | None) -> None:
    flags, seq, ack, seglen, now = seg.flags, seg.seq, seg.ack, seg.length, seg.time
    opts = dict(seg.options)
    if "SYN" in flags:
        fwd.wscale = opts.get("WScale")
    window = seg.win
    if "SYN" not in flags and fwd.wscale is not None and rev.wscale is not None:
        window = seg.win << fwd.wscale
    sfr = bool(flags & {"SYN", "FIN", "RST"})
    skip_rest = False
    if seglen == 1 and fwd.nextseq is not None and seq == fwd.nextseq and rev.window == 0:
        marks.add("zero_window_probe")
        skip_rest = True
    if not skip_rest:
        if window == 0 and not sfr:
            marks.add("zero_window")
        if seglen <= 1 and fwd.nextseq is not None and seq == (fwd.nextseq - 1) & 0xFFFFFFFF and not sfr:
            marks.add("keep_alive")
            if rev.window == 0:
                marks.add("linux_zero_window_probe")
        same = (seglen == 0 and fwd.nextseq is not None and seq == fwd.nextseq and ack == fwd.lastack
                and not sfr)
        if same and window and window != fwd.window:
            marks.add("window_update")
        if same and window and window == fwd.window and "keep_alive" in rev.last_flags:
            marks.add("keep_alive_ack")
            skip_rest = True
        elif same and window == 0 and window == fwd.window and "zero_window_probe" in rev.last_flags:
            marks.add("zero_window_probe_ack")
            skip_rest = True
        elif same and window and window == fwd.window:
            fwd.dupacks = 1 if fwd.dupacks == -1 else fwd.dupacks + 1
            marks.add("duplicate_ack")
    if ack != fwd.lastack:           # Wireshark resets the count only when the ACK moves
        fwd.dupacks = 0
    # "ACKed unseen segment": an ACK beyond what this capture saw of the other direction; once
    # per hole, Wireshark then disarms the other side's duplicate-ACK count (-1)
    if "ACK" in flags and rev.maxseqtobeacked is not None and _gt(ack, rev.maxseqtobeacked):
        if rev.nextseq is not None and rev.maxseqtobeacked > rev.nextseq:
            rev.maxseqtobeacked = rev.nextseq
        else:
            rev.dupacks = -1
    if (seglen > 0 or flags & {"SYN", "FIN"}) and "keep_alive" not in marks:
        not_advanced = fwd.nextseq is not None and _lt(seq, fwd.nextseq)
        if seglen > 1 and fwd.nextseq is not None and seq == (fwd.nextseq - 1) & 0xFFFFFFFF:
            not_advanced = False     # new data after what may have been a zero-window probe
        end = (seq + seglen) & 0xFFFFFFFF
        if seglen > 0 and rev.lastack and not _gt(end, rev.lastack):
            marks.update(("spurious_retransmission", "retransmission"))
        elif not_advanced and rev.dupacks >= 2 and rev.lastack == seq and now - rev.lastack_time < FAST_RTX_WINDOW:
            marks.update(("fast_retransmission", "retransmission"))
        elif not_advanced and now - fwd.nextseq_time < (first_rtt or DEFAULT_OOO) and \
                fwd.nextseq != (end + (1 if flags & {"SYN", "FIN"} else 0)) & 0xFFFFFFFF:
            marks.add("out_of_order")
        elif not_advanced:
            marks.add("retransmission")
    # every segment may move the next expected sequence number, a pure ACK too (a segment
    # beyond a hole that the capture missed), except a zero-window probe
    nxt = (seq + seglen + (1 if (seglen or flags & {"SYN", "FIN"}) and flags & {"SYN", "FIN"} else 0)) & 0xFFFFFFFF
    if (fwd.nextseq is None or _gt(nxt, fwd.nextseq)) and "zero_window_probe" not in marks:
        fwd.nextseq, fwd.nextseq_time = nxt, now
    if (fwd.maxseqtobeacked is None or seq == fwd.maxseqtobeacked) and "zero_window_probe" not in marks:
        fwd.maxseqtobeacked = fwd.nextseq
    fwd.window, fwd.lastack, fwd.lastack_time = window, ack, now
    fwd.last_flags = frozenset(marks)
