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

COUNTS = ("retransmissions", "fast_retransmissions", "spurious_retransmissions", "out_of_order",
          "duplicate_acks", "zero_windows", "zero_window_probes", "linux_zero_window_probes",
          "keep_alives", "window_updates")
FAST_RTX_WINDOW = 0.020
DEFAULT_OOO = 0.003
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
#: the flag of each mark, and the count it goes to (marks are bits: the loop runs per segment of
#: captures of hundreds of megabytes)
(RETRANSMISSION, FAST_RETRANSMISSION, SPURIOUS_RETRANSMISSION, OUT_OF_ORDER, DUPLICATE_ACK, ZERO_WINDOW,
 ZERO_WINDOW_PROBE, LINUX_ZERO_WINDOW_PROBE, KEEP_ALIVE, WINDOW_UPDATE, KEEP_ALIVE_ACK,
 ZERO_WINDOW_PROBE_ACK) = (1 << i for i in range(12))
MARKS = {"retransmission": RETRANSMISSION, "fast_retransmission": FAST_RETRANSMISSION,
         "spurious_retransmission": SPURIOUS_RETRANSMISSION, "out_of_order": OUT_OF_ORDER,
         "duplicate_ack": DUPLICATE_ACK, "zero_window": ZERO_WINDOW, "zero_window_probe": ZERO_WINDOW_PROBE,
         "linux_zero_window_probe": LINUX_ZERO_WINDOW_PROBE, "keep_alive": KEEP_ALIVE,
         "window_update": WINDOW_UPDATE, "keep_alive_ack": KEEP_ALIVE_ACK,
         "zero_window_probe_ack": ZERO_WINDOW_PROBE_ACK}
COUNT_OF = dict(zip(COUNTS, (RETRANSMISSION, FAST_RETRANSMISSION, SPURIOUS_RETRANSMISSION, OUT_OF_ORDER,
                             DUPLICATE_ACK, ZERO_WINDOW, ZERO_WINDOW_PROBE, LINUX_ZERO_WINDOW_PROBE,
                             KEEP_ALIVE, WINDOW_UPDATE)))
M32 = 0xFFFFFFFF


class _Side:
    __slots__ = ("nextseq", "nextseq_time", "lastack", "lastack_time", "window", "dupacks", "maxseqtobeacked",
                 "last_marks", "wscale")

    def __init__(self):
        self.nextseq = self.lastack = self.window = self.maxseqtobeacked = self.wscale = None
        self.nextseq_time = self.lastack_time = 0.0
        self.dupacks = self.last_marks = 0


@dataclass
class Analysed:
    """One connection of a capture: its endpoints, its segments (in capture order: Segments, or
    the header tuples of ``fastparse.pcap_headers``) and the marks of each, as bits of MARKS."""
    client: tuple
    server: tuple
    segments: list = field(default_factory=list)
    bits: list = field(default_factory=list)
    #: endpoint -> the shift its advertised windows take (its SYN's WScale where both SYNs offered
    #: one, RFC 7323; else 0): the one reading of window scaling, for the counts and the graphs
    window_shift: dict = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {k: sum(1 for b in self.bits if b & bit) for k, bit in COUNT_OF.items()}

    def as_dict(self) -> dict:
        def ep(a):
            return f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}"
        return {"client": ep(self.client), "server": ep(self.server), **self.counts()}


def analyse(segments: list) -> list[Analysed]:
    """Every TCP connection among ``segments`` (one capture, in capture order): Segments, or
    header tuples from :func:`tcplab.observe.fastparse.pcap_headers`."""
    from .fastparse import headers_of
    conns: dict[tuple, Analysed] = {}
    state: dict[tuple, dict] = {}
    first_rtt: dict[tuple, float | None] = {}
    syn_time: dict[tuple, float] = {}
    for seg in segments:
        h = seg if isinstance(seg, tuple) else headers_of(seg)
        a, b = (h[1], h[2]), (h[3], h[4])
        key = (a, b) if (a, b) in conns else (b, a) if (b, a) in conns else None
        if key is None:
            # the client is the side that sent the first SYN without ACK, else the first sender
            client, server = (b, a) if h[5] & (SYN | ACK) == SYN | ACK else (a, b)
            key = (client, server)
            conns[key] = Analysed(client, server)
            state[key] = {client: _Side(), server: _Side()}
            first_rtt[key] = None
        conn = conns[key]
        sides = state[key]
        conn.segments.append(seg)
        conn.bits.append(_analyse_one(h, sides[a], sides[b], first_rtt[key]))
        # the first round trip as Wireshark measures it (its iRTT): from the latest SYN to the
        # first segment with ACK and without SYN, at this capture point
        bits = h[5]
        if bits & SYN and not bits & ACK:
            syn_time[key] = h[0]
        elif bits & ACK and not bits & SYN and first_rtt[key] is None and key in syn_time:
            first_rtt[key] = h[0] - syn_time[key]
    for key, conn in conns.items():
        scaled = all(side.wscale is not None for side in state[key].values())
        conn.window_shift = {ep: side.wscale if scaled else 0 for ep, side in state[key].items()}
    return list(conns.values())


def _lt(a: int, b: int) -> bool:
    return ((a - b) & M32) >= 0x80000000


def _analyse_one(h: tuple, fwd: _Side, rev: _Side, first_rtt: float | None) -> int:
    now, _, _, _, _, flags, seq, ack, window, seglen, wscale = h
    if flags & SYN:
        fwd.wscale = wscale
    elif fwd.wscale is not None and rev.wscale is not None:
        window <<= fwd.wscale
    sfr = flags & (SYN | FIN | RST)
    marks = 0
    nextseq = fwd.nextseq
    skip_rest = False
    if seglen == 1 and nextseq is not None and seq == nextseq and rev.window == 0:
        marks |= ZERO_WINDOW_PROBE
        skip_rest = True
    if not skip_rest:
        if window == 0 and not sfr:
            marks |= ZERO_WINDOW
        if seglen <= 1 and nextseq is not None and seq == (nextseq - 1) & M32 and not sfr:
            marks |= KEEP_ALIVE
            if rev.window == 0:
                marks |= LINUX_ZERO_WINDOW_PROBE
        if seglen == 0 and nextseq is not None and seq == nextseq and ack == fwd.lastack and not sfr:
            if window and window != fwd.window:
                marks |= WINDOW_UPDATE
            if window and window == fwd.window and rev.last_marks & KEEP_ALIVE:
                marks |= KEEP_ALIVE_ACK
            elif window == 0 and window == fwd.window and rev.last_marks & ZERO_WINDOW_PROBE:
                marks |= ZERO_WINDOW_PROBE_ACK
            elif window and window == fwd.window:
                fwd.dupacks = 1 if fwd.dupacks == -1 else fwd.dupacks + 1
                marks |= DUPLICATE_ACK
    if ack != fwd.lastack:           # Wireshark resets the count only when the ACK moves
        fwd.dupacks = 0
    # "ACKed unseen segment": an ACK beyond what this capture saw of the other direction; once
    # per hole, Wireshark then disarms the other side's duplicate-ACK count (-1)
    if flags & ACK and rev.maxseqtobeacked is not None and _lt(rev.maxseqtobeacked, ack):
        if rev.nextseq is not None and rev.maxseqtobeacked > rev.nextseq:
            rev.maxseqtobeacked = rev.nextseq
        else:
            rev.dupacks = -1
    synfin = 1 if flags & (SYN | FIN) else 0
    if (seglen > 0 or synfin) and not marks & KEEP_ALIVE:
        not_advanced = nextseq is not None and _lt(seq, nextseq)
        if seglen > 1 and nextseq is not None and seq == (nextseq - 1) & M32:
            not_advanced = False     # new data after what may have been a zero-window probe
        end = (seq + seglen) & M32
        if seglen > 0 and rev.lastack and not _lt(rev.lastack, end):
            marks |= SPURIOUS_RETRANSMISSION | RETRANSMISSION
        elif not_advanced and rev.dupacks >= 2 and rev.lastack == seq and now - rev.lastack_time < FAST_RTX_WINDOW:
            marks |= FAST_RETRANSMISSION | RETRANSMISSION
        elif not_advanced and now - fwd.nextseq_time < (first_rtt or DEFAULT_OOO) and \
                nextseq != (end + synfin) & M32:
            marks |= OUT_OF_ORDER
        elif not_advanced:
            marks |= RETRANSMISSION
    # every segment may move the next expected sequence number, a pure ACK too (a segment
    # beyond a hole that the capture missed), except a zero-window probe
    nxt = (seq + seglen + synfin) & M32
    if (nextseq is None or _lt(nextseq, nxt)) and not marks & ZERO_WINDOW_PROBE:
        fwd.nextseq, fwd.nextseq_time = nxt, now
    if (fwd.maxseqtobeacked is None or seq == fwd.maxseqtobeacked) and not marks & ZERO_WINDOW_PROBE:
        fwd.maxseqtobeacked = fwd.nextseq
    fwd.window, fwd.lastack, fwd.lastack_time = window, ack, now
    fwd.last_marks = marks
    return marks
