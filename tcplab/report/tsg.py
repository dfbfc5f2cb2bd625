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


class _Graph:
    """What a time-sequence graph draws of one direction of a connection, in relative numbers."""

    def __init__(self, analysed, sender: str):
        self.me = analysed.client if sender == "client" else analysed.server
        self.other = analysed.server if sender == "client" else analysed.client
        data, acks, theirs, isn = [], [], [], None
        for seg, b in zip(analysed.segments, analysed.bits):
            mine = (seg.src, seg.sport) == self.me
            if "SYN" in seg.flags and mine:
                isn = seg.seq
            if mine and (seg.length or seg.flags & {"SYN", "FIN"}):
                data.append((seg, b))
            elif not mine and "ACK" in seg.flags:
                acks.append((seg, b))
            if not mine and b & RETRANSMISSION:
                theirs.append((seg, b))     # the receiver's own retransmissions: its SYN sent again
        if isn is None:
            isn = next((s.seq for s, _ in data), next((s.ack - 1 for s, _ in acks), 0))
        self.isn = isn
        scale = analysed.window_shift.get(self.other, 0)      # the receiver's windows, as analysis reads them
        self.wins = [self.rel(s.ack) + (s.win << scale if "SYN" not in s.flags else s.win) for s, _ in acks]
        # from the first data segment (a lab's set-up may leave a long gap after the handshake),
        # or from the first segment Wireshark flags (a retransmitted SYN) if that is earlier
        first = min([s.time for s, _ in data if s.length] + [s.time for s, b in data + theirs if b & RETRANSMISSION],
                    default=None)
        points = [s.time for s, _ in data + acks + theirs if first is None or s.time >= first] or [0.0]
        self.start, end = min(points), max(points)
        self.end = end if end > self.start else self.start + 0.001
        pad = (self.end - self.start) * 0.02
        self.t0, self.t1 = self.start - pad, self.end + pad
        keep = [i for i, (s, _) in enumerate(acks) if s.time >= self.t0]
        self.data = [(s, b) for s, b in data if s.time >= self.t0]
        self.theirs = [(s, b) for s, b in theirs if s.time >= self.t0]
        self.acks = [acks[i] for i in keep]
        self.wins = [self.wins[i] for i in keep]

    def rel(self, v: int) -> int:
        return (v - self.isn) % 2**32

    def top(self, t0: float, t1: float) -> float:
        """The sequence numbers a view of ``t0..t1`` must hold: the data's and the ACKs', and the
        window line's up to twice that (above, the window line leaves through the top)."""
        ys = [self.rel(s.seq) + s.length for s, _ in self.data if t0 <= s.time <= t1]
        ys += [self.rel(s.ack) for s, _ in self.acks if t0 <= s.time <= t1]
        wins = [w for (s, _), w in zip(self.acks, self.wins) if t0 <= s.time <= t1]
        ymax = max(ys + [1])
        return max(ymax, min(max(wins + [0]), 2 * ymax)) * 1.04

    def episodes(self, most: int = 6) -> list[tuple[float, float]]:
        """The loss episodes: time windows around runs of marked events (retransmissions,
        duplicate ACKs, SACK blocks) that are apart from each other by more than 4 % of the
        graph's span; the ``most`` largest, in time order."""
        events = sorted([s.time for s, b in self.data if b & RETRANSMISSION]
                        + [s.time for s, b in self.acks if b & DUPLICATE_ACK or dict(s.options).get("SAck")])
        if not events:
            return []
        span = self.end - self.start
        runs, run = [], [events[0]]
        for t in events[1:]:
            if t - run[-1] > 0.04 * span:
                runs.append(run)
                run = []
            run.append(t)
        runs.append(run)
        runs = sorted(sorted(runs, key=len, reverse=True)[:most], key=lambda r: r[0])
        out = []
        for r in runs:
            margin = max((r[-1] - r[0]) * 0.3, 0.01 * span, 1e-4)
            out.append((max(r[0] - margin, self.t0), min(r[-1] + margin, self.t1)))
        return out


def tsg_svg(analysed, sender: str = "client", title: str | None = None, kernel=None) -> str:
    """SVG text for the data ``sender`` ("client" or "server") sent on the connection
    ``analysed`` (a :class:`tcplab.observe.analysis.Analysed` of Segments).  ``kernel``: the
    sender's :class:`~tcplab.observe.sender.SenderRecord`, drawn in a panel underneath.

    Under the whole connection, each loss episode gets a panel of its own, zoomed on its time
    and sequence numbers (``<g class="episode">``; the overview shades where each one is), so
    retransmissions, duplicate ACKs and SACK blocks can be told apart at any scale."""
    g = _Graph(analysed, sender)
    episodes = g.episodes()
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    kernel_top = H - 30                           # the kernel's panel shares the bottom margin
    ep_top = kernel_top + (PANEL if kernel else 30)
    height = ep_top + len(episodes) * EPISODE_H + (10 if episodes else -30)
    ymax = g.top(g.t0, g.t1)
    unit, unit_name = (1e6, "MB") if ymax >= 5e6 else (1e3, "kB") if ymax >= 5e3 else (1, "bytes")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="tcplab-tsg" width="{W}" height="{height}" '
           f'viewBox="0 0 {W} {height}" font-family="DejaVu Sans, sans-serif" font-size="13">',
           f'<rect x="0" y="0" width="{W}" height="{height}" fill="white"/>']
    ep = (lambda a: f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}")
    head = title or f"time-sequence graph: {ep(g.me)} \u2192 {ep(g.other)}"
    out.append(f'<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{escape(head)}</text>')
    x = _plot(out, g, (LEFT, TOP, pw, ph), g.t0, g.t1, 0, ymax, unit, time_labels=not kernel, clip="tsg-all",
              shade=episodes)
    out.append(f'<text transform="translate(22,{TOP + ph / 2}) rotate(-90)" text-anchor="middle">'
               f'relative sequence number ({unit_name})</text>')
    if not kernel:
        out.append(f'<text x="{LEFT + pw / 2}" y="{TOP + ph + 44}" text-anchor="middle">time since the first '
                   'segment drawn (s)</text>')
    _legend(out)
    if kernel:
        out += _kernel_panel(kernel, x, g.t0, g.t1, g.start, TOP + ph + 34)
    for i, (a, b) in enumerate(episodes, 1):
        top = ep_top + (i - 1) * EPISODE_H + 30
        lo = min([g.rel(s.seq) for s, _ in g.data if a <= s.time <= b] + [g.rel(s.ack) for s, _ in g.acks
                 if a <= s.time <= b] or [0])
        hi = max([g.rel(s.seq) + s.length for s, _ in g.data if a <= s.time <= b]
                 + [g.rel(s.ack) for s, _ in g.acks if a <= s.time <= b] or [1])
        padv = max((hi - lo) * 0.08, 1)
        out.append(f'<g class="episode" data-episode="{i}">')
        out.append(f'<text x="{LEFT}" y="{top - 10}" font-size="13" font-weight="bold">loss episode {i}: '
                   f'{a - g.start:.4f} s to {b - g.start:.4f} s</text>')
        _plot(out, g, (LEFT, top, pw, EPISODE_H - 70), a, b, max(lo - padv, 0), hi + padv, unit, time_labels=True,
              clip=f"tsg-ep{i}", origin=g.start)
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


EPISODE_H = 280                 # height of each loss episode's panel, with its title and time axis


def _plot(out: list, g: _Graph, rect: tuple, t0: float, t1: float, y0: float, y1: float, unit: float, *,
          time_labels: bool, clip: str, shade=(), origin: float | None = None):
    """Draw ``g`` between ``t0..t1`` and sequence numbers ``y0..y1`` into ``rect`` (x, y, w, h):
    grid, axes' numbers, lines and marks, clipped to the plot.  Returns the time -> x function."""
    left, top, pw, ph = rect
    origin = g.start if origin is None else origin

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * pw

    def y(v: float) -> float:
        return top + ph - (v - y0) / (y1 - y0) * ph

    out.append(f'<defs><clipPath id="{clip}"><rect x="{left}" y="{top}" width="{pw}" height="{ph}"/></clipPath></defs>')
    out.append(f'<g class="axes" stroke="#333" fill="none"><rect x="{left}" y="{top}" width="{pw}" height="{ph}"/></g>')
    for t, label in _time_ticks(t0 - origin, t1 - origin):
        xx = x(origin + t)
        out.append(f'<line x1="{xx:.1f}" y1="{top}" x2="{xx:.1f}" y2="{top + ph}" stroke="#eee"/>')
        if time_labels:
            out.append(f'<text x="{xx:.1f}" y="{top + ph + 18}" text-anchor="middle" fill="#333">{label}</text>')
    for v in _nice(y0, y1):
        yy = y(v)
        out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + pw}" y2="{yy:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 8}" y="{yy + 4:.1f}" text-anchor="end" fill="#333">{_bytes_label(v, unit)}</text>')
    out.append(f'<g clip-path="url(#{clip})">')
    for i, (a, b) in enumerate(shade, 1):       # where each loss episode's own panel looks
        out.append(f'<rect class="episode-band" x="{x(a):.1f}" y="{top}" width="{max(x(b) - x(a), 2):.1f}" '
                   f'height="{ph}" fill="#fff3c4" opacity="0.6"/>')
        out.append(f'<text x="{x(a) + 3:.1f}" y="{top + ph - 6}" font-size="11" fill="#8a6d00">{i}</text>')
    acks = [(s, b, w) for (s, b), w in zip(g.acks, g.wins)]
    view = [k for k, (s, _, _) in enumerate(acks) if t0 <= s.time <= t1]
    if view:   # the ACK before the view holds into it
        view = ([view[0] - 1] if view[0] > 0 else []) + view
    # window line and ACK line: steps, each ACK holding until the next
    for cls, value in (("window-line", lambda a: a[2]), ("ack-line", lambda a: g.rel(a[0].ack))):
        if not view:
            break
        pts = []
        for k in view:
            nxt = acks[k + 1][0].time if k + 1 < len(acks) else t1
            v = value(acks[k])
            pts += [f"{x(max(acks[k][0].time, t0)):.1f},{y(v):.1f}", f"{x(min(nxt, t1)):.1f},{y(v):.1f}"]
        out.append(f'<polyline class="{cls}" points="{" ".join(pts)}" fill="none" stroke="{COLOURS[cls]}" '
                   f'stroke-width="1.5"/>')
    for s, b in g.data:
        if not t0 <= s.time <= t1:
            continue
        cls = "retransmission" if b & RETRANSMISSION else "segment"
        lo = g.rel(s.seq)
        xx = x(s.time)
        if not s.length:
            if b & RETRANSMISSION:   # a SYN or FIN sent again: a red triangle where it sits
                out.append(f'<path class="{cls}" d="M{xx:.1f},{y(lo) - 9:.1f}l-5,-9h10z" fill="{COLOURS[cls]}"/>')
            continue
        hi = lo + s.length
        out.append(f'<path class="{cls}" d="M{xx - 2:.1f},{y(lo):.1f}h4M{xx:.1f},{y(lo):.1f}V{y(hi):.1f}'
                   f'M{xx - 2:.1f},{y(hi):.1f}h4" stroke="{COLOURS[cls]}" stroke-width="{2 if b & RETRANSMISSION else 1.2}"/>')
    for s, b in g.theirs:       # the receiver's retransmissions (a SYN again): a hollow triangle on the ACKs
        if t0 <= s.time <= t1:
            yy = y(g.rel(s.ack) if "ACK" in s.flags else 0)
            out.append(f'<path class="retransmission" d="M{x(s.time):.1f},{yy - 9:.1f}l-5,-9h10z" fill="white" '
                       f'stroke="{COLOURS["retransmission"]}" stroke-width="1.5"/>')
    # SACK blocks, duplicate ACKs, zero windows
    for s, b, w in acks:
        if not t0 <= s.time <= t1:
            continue
        xx = x(s.time)
        edges = dict(s.options).get("SAck") or ()
        for lo, hi in zip(edges[::2], edges[1::2]):
            out.append(f'<line class="sack" x1="{xx:.1f}" y1="{y(g.rel(lo)):.1f}" x2="{xx:.1f}" '
                       f'y2="{y(g.rel(hi)):.1f}" stroke="{COLOURS["sack"]}" stroke-width="3" opacity="0.7"/>')
        if b & DUPLICATE_ACK:
            out.append(f'<circle class="dupack" cx="{xx:.1f}" cy="{y(g.rel(s.ack)):.1f}" r="3" fill="none" '
                       f'stroke="{COLOURS["dupack"]}" stroke-width="1.2"/>')
        if b & ZERO_WINDOW:
            out.append(f'<rect class="zero-window" x="{xx - 4:.1f}" y="{y(w) - 4:.1f}" width="8" height="8" '
                       f'fill="{COLOURS["zero-window"]}"/>')
    out.append("</g>")
    return x


def _time_ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    """Round ticks within lo..hi seconds, with as many decimals as their step needs."""
    ticks = [t for t in _nice(lo, hi) if lo <= t <= hi]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else (hi - lo) or 1.0
    exponent = math.floor(math.log10(step) + 1e-9)
    mantissa = step / 10 ** exponent
    decimals = max(0, -exponent + (0 if abs(mantissa - round(mantissa)) < 1e-9 else 1))
    return [(t, f"{t:.{decimals}f}" if abs(t) > 1e-12 else "0") for t in ticks]


def _legend(out: list) -> None:
    """In the top left corner of the plot (the data rise towards the top right)."""
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
    for t, label in _time_ticks(t0 - start, t1 - start):
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


def tsg_html(analysed, sender: str = "client", title: str | None = None, kernel=None) -> str:
    """The same graph as a page to zoom and pan (drag a box to zoom, double-click to go back),
    drawn by Plotly with its JavaScript inside the page: it opens offline, from a file.  Plain
    SVG traces, one path per kind of mark (WebGL is missing where a browser has no GPU).  The
    same marks, with the same names in the legend (a click hides or shows one), and the
    kernel's cwnd and ssthresh in a panel underneath on the same time axis."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    g = _Graph(analysed, sender)
    rows = 2 if kernel else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        row_heights=[0.75, 0.25] if kernel else [1.0])

    def t(v: float) -> float:
        return v - g.start

    def bars(items):
        xs, ys = [], []
        for s, _ in items:
            lo = g.rel(s.seq)
            xs += [t(s.time), t(s.time), None]
            ys += [lo, lo + max(s.length, 1), None]
        return xs, ys
    for name, cls, pick in (("data segment", "segment", lambda b: not b & RETRANSMISSION),
                            ("retransmission", "retransmission", lambda b: b & RETRANSMISSION)):
        xs, ys = bars([(s, b) for s, b in g.data if pick(b) and s.length])
        # a bar from the first byte to the last, with a tick at each end (tcptrace's mark), so a
        # segment shows at any zoom, however few bytes tall it is there
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, line=dict(
            color=COLOURS[cls], width=3 if cls == "retransmission" else 1.5), marker=dict(
            symbol="line-ew-open", size=7 if cls == "retransmission" else 5, color=COLOURS[cls],
            line=dict(width=2 if cls == "retransmission" else 1.2, color=COLOURS[cls]))), row=1, col=1)
    again = [(s, g.rel(s.seq)) for s, b in g.data if b & RETRANSMISSION and not s.length]
    again += [(s, g.rel(s.ack) if "ACK" in s.flags else 0) for s, _ in g.theirs]
    if again:
        fig.add_trace(go.Scatter(x=[t(s.time) for s, _ in again], y=[v for _, v in again],
                                 mode="markers", name="SYN/FIN sent again", marker=dict(
                                     symbol="triangle-down", size=11, color=COLOURS["retransmission"])), row=1, col=1)
    if g.acks:
        times = [t(s.time) for s, _ in g.acks]
        fig.add_trace(go.Scatter(x=times, y=[g.rel(s.ack) for s, _ in g.acks], mode="lines", name="ACK",
                                   line=dict(color=COLOURS["ack-line"], shape="hv", width=1.5)), row=1, col=1)
        fig.add_trace(go.Scatter(x=times, y=g.wins, mode="lines", name="ACK + window",
                                   line=dict(color=COLOURS["window-line"], shape="hv", width=1.5)), row=1, col=1)
        xs, ys = [], []
        for s, _ in g.acks:
            edges = dict(s.options).get("SAck") or ()
            for lo, hi in zip(edges[::2], edges[1::2]):
                xs += [t(s.time), t(s.time), None]
                ys += [g.rel(lo), g.rel(hi), None]
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="SACK block",
                                       line=dict(color=COLOURS["sack"], width=4), opacity=0.7), row=1, col=1)
        for name, cls, bit, value in (("duplicate ACK", "dupack", DUPLICATE_ACK, lambda s, w: g.rel(s.ack)),
                                      ("zero window", "zero-window", ZERO_WINDOW, lambda s, w: w)):
            marked = [(s, w) for (s, b), w in zip(g.acks, g.wins) if b & bit]
            if marked:
                fig.add_trace(go.Scatter(x=[t(s.time) for s, _ in marked], y=[value(s, w) for s, w in marked],
                                         mode="markers", name=name, marker=dict(
                                             color=COLOURS[cls], size=8,
                                             symbol="circle-open" if cls == "dupack" else "square")), row=1, col=1)
    if kernel:
        steps = [(max(st, g.t0), smp) for st, smp in kernel.steps() if st <= g.t1]
        for name, value, dash in (("cwnd", lambda smp: smp.cwnd, "solid"),
                                  ("ssthresh", lambda smp: smp.ssthresh, "dash")):
            fig.add_trace(go.Scatter(x=[t(st) for st, _ in steps], y=[value(smp) for _, smp in steps],
                                     mode="lines", name=f"{name} (kernel)", line=dict(
                                         color=COLOURS[name], shape="hv", dash=dash)), row=2, col=1)
        fig.update_yaxes(title_text="segments", row=2, col=1)
    ep = (lambda a: f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}")
    fig.update_layout(title=title or f"time-sequence graph: {ep(g.me)} \u2192 {ep(g.other)}",
                      template="plotly_white", height=820 if kernel else 680, dragmode="zoom",
                      legend=dict(orientation="h", y=-0.12), hovermode="closest")
    fig.update_yaxes(title_text="relative sequence number (bytes)", row=1, col=1)
    fig.update_xaxes(title_text="time since the first segment drawn (s)", row=rows, col=1)
    for i, (a, b) in enumerate(g.episodes(), 1):
        fig.add_vrect(x0=t(a), x1=t(b), fillcolor="#fff3c4", opacity=0.5, line_width=0, row=1, col=1, layer="below",
                      annotation_text=f"loss episode {i}", annotation_position="top left")
    return fig.to_html(include_plotlyjs=True, full_html=True, config={"scrollZoom": True, "displaylogo": False},
                       div_id="tcplab-tsg")
