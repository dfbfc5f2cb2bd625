"""The time-sequence graph of one direction of a connection, as tcptrace and Wireshark's "Stevens"
graph draw it: time across, relative sequence number up.

* each data segment is a vertical bar from its first to its last byte (class ``segment``); a
  segment that re-sends bytes (Wireshark's retransmission, fast ones included) is red, class
  ``retransmission``; one element per segment;
* the receiver's ACK line (class ``ack-line``): the acknowledged sequence number, a step per ACK;
* its window line (class ``window-line``): ACK plus the advertised (scaled) window, the most the
  sender may have sent;
* SACK blocks (class ``sack``), one bar per block of each ACK that carries them;
* duplicate ACKs (class ``dupack``), one tick per duplicate ACK on the ACK line;
* zero windows (class ``zero-window``), a marker on the window line for each ACK that closes it;
* with the kernel's sender record (tcplab's own captures), a panel underneath on the same time
  axis: the sender's cwnd (class ``cwnd``) and ssthresh (class ``ssthresh``), in segments, as
  steps (see :meth:`tcplab.observe.sender.SenderRecord.steps`).

The marks come from :mod:`tcplab.observe.analysis` (Wireshark's definitions), so the picture and
``tcplab analyze`` count the same things.  Class names let a course restyle the marks (CSS) and a
test count them.  The SVG stands alone (inline in HTML, or a file), with a white background and
axes labelled with their units.
"""
from __future__ import annotations

import math
from html import escape

from ..observe.analysis import DUPLICATE_ACK, RETRANSMISSION, ZERO_WINDOW

W, H = 1000, 620
PANEL = 190                     # height added for the kernel's panel (plot, axis and gap)
LEFT, RIGHT, TOP, BOTTOM = 96, 24, 64, 70
COLOURS = {"segment": "#1f3b73", "retransmission": "#d62728", "ack-line": "#2ca02c",
           "window-line": "#9467bd", "sack": "#ff7f0e", "dupack": "#8c564b", "zero-window": "#e377c2",
           "cwnd": "#1f77b4", "ssthresh": "#7f7f7f"}


def _nice(lo: float, hi: float, n: int = 6) -> list[float]:
    """About ``n`` round tick values covering lo..hi."""
    span = hi - lo or 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _time_labels(span: float) -> list[tuple[float, str]]:
    """Round ticks over 0..span seconds with as many decimals as their step needs (0.0005 s
    apart reads 0.0005, 0.001, 0.0015: never two equal labels)."""
    ticks = _nice(0, span)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else span or 1.0
    exponent = math.floor(math.log10(step) + 1e-9)
    mantissa = step / 10 ** exponent                   # 1, 2, 2.5 or 5
    decimals = max(0, -exponent + (0 if abs(mantissa - round(mantissa)) < 1e-9 else 1))
    return [(t, f"{t:.{decimals}f}" if t else "0") for t in ticks]


def _bytes_label(v: float, unit: float) -> str:
    x = v / unit
    return f"{x:g}" if abs(x - round(x)) < 1e-9 else f"{x:.1f}"


def bigger_sender(segments, client: tuple) -> str:
    """"client" or "server": the side of a connection that sent more bytes among ``segments``
    (whose data a graph draws when nobody chose)."""
    sent = {"client": 0, "server": 0}
    for s in segments:
        sent["client" if (s.src, s.sport) == client else "server"] += s.length
    return max(sent, key=sent.get)


def tsg_svg(analysed, sender: str = "client", title: str | None = None, kernel=None) -> str:
    """SVG text for the data ``sender`` ("client" or "server") sent on the connection
    ``analysed`` (a :class:`tcplab.observe.analysis.Analysed` of Segments).  ``kernel``: the
    sender's :class:`~tcplab.observe.sender.SenderRecord`, drawn in a panel underneath."""
    me = analysed.client if sender == "client" else analysed.server
    segs, bits = analysed.segments, analysed.bits
    data, acks = [], []
    isn = None
    for seg, b in zip(segs, bits):
        mine = (seg.src, seg.sport) == me
        if "SYN" in seg.flags and mine:
            isn = seg.seq
        if mine and (seg.length or seg.flags & {"SYN", "FIN"}):
            data.append((seg, b))
        elif not mine and "ACK" in seg.flags:
            acks.append((seg, b))
    if isn is None:
        isn = next((s.seq for s, _ in data), next((s.ack - 1 for s, _ in acks), 0))
    other = analysed.server if sender == "client" else analysed.client
    scale = analysed.window_shift.get(other, 0)       # the receiver's windows, as analysis reads them

    def rel(v: int) -> int:
        return (v - isn) % 2**32

    # time from the first data segment (a lab's set-up may leave a long gap after the handshake),
    # with a margin of 2 % on each side
    first = min((s.time for s, _ in data if s.length), default=None)
    points = [s.time for s, _ in data + acks if first is None or s.time >= first] or [0.0]
    start, t1 = min(points), max(points)
    t1 = t1 if t1 > start else start + 0.001
    pad = (t1 - start) * 0.02
    t0, t1 = start - pad, t1 + pad
    data = [(s, b) for s, b in data if s.time >= t0]
    acks = [(s, b) for s, b in acks if s.time >= t0]
    ys = [rel(s.seq) + s.length for s, _ in data] + [rel(s.ack) for s, _ in acks]
    wins = [rel(s.ack) + (s.win << scale if "SYN" not in s.flags else s.win) for s, _ in acks]
    ymax = max(ys + [1])
    # the window line may run far above the data: show it, up to twice the data's height
    ymax = max(ymax, min(max(wins + [0]), 2 * ymax))
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    height = H + (PANEL - 30 if kernel else 0)   # the panel shares the bottom margin

    def x(t: float) -> float:
        return LEFT + (t - t0) / (t1 - t0) * pw

    def y(v: float) -> float:
        return TOP + ph - min(v, ymax) / ymax * ph

    unit, unit_name = (1e6, "MB") if ymax >= 5e6 else (1e3, "kB") if ymax >= 5e3 else (1, "bytes")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="tcplab-tsg" width="{W}" height="{height}" '
           f'viewBox="0 0 {W} {height}" font-family="DejaVu Sans, sans-serif" font-size="13">',
           f'<rect x="0" y="0" width="{W}" height="{height}" fill="white"/>']
    ep = (lambda a: f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}")
    head = title or f"time-sequence graph: {ep(me)} \u2192 {ep(other)}"
    out.append(f'<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{escape(head)}</text>')
    # axes and grid
    out.append(f'<g class="axes" stroke="#333" fill="none"><rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}"/></g>')
    for t, label in _time_labels(t1 - start):
        xx = x(start + t)
        out.append(f'<line x1="{xx:.1f}" y1="{TOP}" x2="{xx:.1f}" y2="{TOP + ph}" stroke="#eee"/>')
        if not kernel:      # with the kernel's panel, the shared time axis is labelled under it
            out.append(f'<text x="{xx:.1f}" y="{TOP + ph + 18}" text-anchor="middle" fill="#333">{label}</text>')
    for v in _nice(0, ymax):
        yy = y(v)
        out.append(f'<line x1="{LEFT}" y1="{yy:.1f}" x2="{LEFT + pw}" y2="{yy:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 8}" y="{yy + 4:.1f}" text-anchor="end" fill="#333">{_bytes_label(v, unit)}</text>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{height - 24}" text-anchor="middle">time since the first data segment (s)</text>')
    out.append(f'<text transform="translate(22,{TOP + ph / 2}) rotate(-90)" text-anchor="middle">'
               f'relative sequence number ({unit_name})</text>')
    # window line and ACK line: steps, each ACK holding until the next
    for cls, values in (("window-line", wins), ("ack-line", [rel(s.ack) for s, _ in acks])):
        if not acks:
            break
        pts = []
        for i, ((s, _), v) in enumerate(zip(acks, values)):
            nxt = acks[i + 1][0].time if i + 1 < len(acks) else t1
            pts += [f"{x(s.time):.1f},{y(v):.1f}", f"{x(nxt):.1f},{y(v):.1f}"]
        out.append(f'<polyline class="{cls}" points="{" ".join(pts)}" fill="none" stroke="{COLOURS[cls]}" '
                   f'stroke-width="1.5"/>')
    # data segments
    for s, b in data:
        cls = "retransmission" if b & RETRANSMISSION else "segment"
        lo, hi = rel(s.seq), rel(s.seq) + max(s.length, 1)
        xx = x(s.time)
        out.append(f'<path class="{cls}" d="M{xx - 2:.1f},{y(lo):.1f}h4M{xx:.1f},{y(lo):.1f}V{y(hi):.1f}'
                   f'M{xx - 2:.1f},{y(hi):.1f}h4" stroke="{COLOURS[cls]}" stroke-width="{2 if b & RETRANSMISSION else 1.2}"/>')
    # SACK blocks, duplicate ACKs, zero windows
    for (s, b), w in zip(acks, wins):
        xx = x(s.time)
        edges = dict(s.options).get("SAck") or ()
        for lo, hi in zip(edges[::2], edges[1::2]):
            out.append(f'<line class="sack" x1="{xx:.1f}" y1="{y(rel(lo)):.1f}" x2="{xx:.1f}" y2="{y(rel(hi)):.1f}" '
                       f'stroke="{COLOURS["sack"]}" stroke-width="3" opacity="0.7"/>')
        if b & DUPLICATE_ACK:
            out.append(f'<circle class="dupack" cx="{xx:.1f}" cy="{y(rel(s.ack)):.1f}" r="3" fill="none" '
                       f'stroke="{COLOURS["dupack"]}" stroke-width="1.2"/>')
        if b & ZERO_WINDOW:
            out.append(f'<rect class="zero-window" x="{xx - 4:.1f}" y="{y(w) - 4:.1f}" width="8" height="8" '
                       f'fill="{COLOURS["zero-window"]}"/>')
    # legend, in the top left corner of the plot (the data rise towards the top right)
    items = [("segment", "data segment"), ("retransmission", "retransmission"), ("ack-line", "ACK"),
             ("window-line", "ACK + window"), ("sack", "SACK block"), ("dupack", "duplicate ACK"),
             ("zero-window", "zero window")]
    lx, ly = LEFT + 12, TOP + 10
    out.append(f'<rect x="{lx - 6}" y="{ly - 4}" width="150" height="{len(items) * 18 + 6}" fill="white" '
               f'stroke="#ccc" opacity="0.9"/>')
    for i, (cls, label) in enumerate(items):
        yy = ly + 9 + i * 18
        out.append(f'<line x1="{lx}" y1="{yy}" x2="{lx + 18}" y2="{yy}" stroke="{COLOURS[cls]}" stroke-width="3"/>')
        out.append(f'<text x="{lx + 26}" y="{yy + 4}" font-size="12">{label}</text>')
    if kernel:
        out += _kernel_panel(kernel, x, t0, t1, start, TOP + ph + 34)
    out.append("</svg>")
    return "\n".join(out)


def _kernel_panel(record, x, t0: float, t1: float, start: float, top: float) -> list[str]:
    """cwnd and ssthresh (segments) as steps under the graph, on its time axis."""
    ph, pw = PANEL - 64, W - LEFT - RIGHT
    steps = [(max(t, t0), s) for t, s in record.steps() if t <= t1]
    if not steps:
        return []
    later = [t for t, _ in steps[1:]] + [t1]
    top_value = max(max(s.cwnd for _, s in steps), max((s.ssthresh or 0) for _, s in steps), 1) * 1.1

    def y(v: float) -> float:
        return top + ph - v / top_value * ph
    out = [f'<g class="kernel-panel"><rect x="{LEFT}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>']
    for v in _nice(0, top_value, 4):
        out.append(f'<line x1="{LEFT}" y1="{y(v):.1f}" x2="{LEFT + pw}" y2="{y(v):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#333">{v:g}</text>')
    for t, label in _time_labels(t1 - start):
        xx = x(start + t)
        out.append(f'<line x1="{xx:.1f}" y1="{top}" x2="{xx:.1f}" y2="{top + ph}" stroke="#eee"/>')
        out.append(f'<text x="{xx:.1f}" y="{top + ph + 18}" text-anchor="middle" fill="#333">{label}</text>')
    out.append(f'<text transform="translate(22,{top + ph / 2}) rotate(-90)" text-anchor="middle">segments</text>')
    for cls, value, dash in (("cwnd", lambda s: s.cwnd, ""), ("ssthresh", lambda s: s.ssthresh, ' stroke-dasharray="6,4"')):
        runs, pts = [], []
        for (t, s), nxt in zip(steps, later):
            v = value(s)
            if v is None:           # no threshold yet: a gap in the line
                if pts:
                    runs.append(pts)
                pts = []
                continue
            pts += [f"{x(t):.1f},{y(v):.1f}", f"{x(nxt):.1f},{y(v):.1f}"]
        if pts:
            runs.append(pts)
        for r in runs:
            out.append(f'<polyline class="{cls}" points="{" ".join(r)}" fill="none" stroke="{COLOURS[cls]}" '
                       f'stroke-width="1.8"{dash}/>')
    source = "sampled TCP_INFO" if record.sampled else "tcp:tcp_probe"
    out.append(f'<text x="{LEFT + pw}" y="{top - 8}" text-anchor="end" font-size="12">'
               f'<tspan fill="{COLOURS["cwnd"]}">\u2014 cwnd</tspan>  '
               f'<tspan fill="{COLOURS["ssthresh"]}">- - ssthresh</tspan>  '
               f'<tspan fill="#555">(the kernel\u2019s record: {source})</tspan></text>')
    out.append("</g>")
    return out
