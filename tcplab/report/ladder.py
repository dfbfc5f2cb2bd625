"""The ladder (sequence) diagram of one connection as SVG: the picture textbooks draw by hand.

The client and the server are two vertical time lines; each segment is an arrow from its sender
to its receiver, labelled with its flags and relative seq/ack (``S. 0:0(0) ack 1``), in time order
down the page, with its time since the first segment in the left margin.  A segment lost on the
wire stops half-way with a red cross.  Notes (on a failure: the expected segment beside the
observed one) are written in red at the right of their row.  No fonts or scripts are needed
beyond a generic monospace font; the SVG stands alone (inline in HTML, or a file).
"""
from __future__ import annotations

from html import escape

ROW = 38          # vertical distance between segments
TOP = 64          # y of the first arrow
LEFT_X = 190      # client time line
RIGHT_X = 610     # server time line
NOTE_X = 630
SLOPE = 18        # an arrow drops this much: time passes while a segment travels


def ladder_svg(conn, notes: dict[int, str] | None = None, missing: str | None = None,
               title: str | None = None) -> str:
    """SVG text for ``conn`` (a :class:`tcplab.Connection`)."""
    notes = notes or {}
    segs = conn.segments
    rows = len(segs) + (1 if missing else 0)
    note_w = max([len(t) for t in notes.values()] + [len(missing or "")] + [0]) * 7.2
    width = int(max(NOTE_X + note_w + 20, 800))
    height = TOP + rows * ROW + 40
    t0 = segs[0].time if segs else 0.0
    family = conn.family
    client = f"client {_ep(conn.client, family)}"
    server = f"server {_ep(conn.server, family)}"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="tcplab-ladder" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans Mono, monospace" font-size="13">',
           "<defs>"
           '<marker id="tl-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#1f3b73"/></marker>'
           "</defs>",
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>']
    if title:
        out.append(f'<text x="10" y="18" font-weight="bold">{escape(title)}</text>')
    bottom = height - 20
    for x, label in ((LEFT_X, client), (RIGHT_X, server)):
        out.append(f'<text x="{x}" y="{TOP - 26}" text-anchor="middle" font-weight="bold">{escape(label)}</text>')
        out.append(f'<line x1="{x}" y1="{TOP - 16}" x2="{x}" y2="{bottom}" stroke="#333" stroke-width="2"/>')
    out.append(f'<text x="10" y="{TOP - 26}" fill="#666">#   time</text>')
    for i, s in enumerate(segs):
        y = TOP + i * ROW
        lost = conn.is_lost(i) if conn.received is not None else False
        from_client = conn.side(s) == "client"
        x1, x2 = (LEFT_X, RIGHT_X) if from_client else (RIGHT_X, LEFT_X)
        label = escape(conn.line(s)[2:])
        out.append(f'<text x="10" y="{y + 12}" fill="#666">{i + 1:<3} {s.time - t0:7.3f}s</text>')
        colour = "#b00020" if lost else "#1f3b73"
        if lost:
            xm = x1 + (x2 - x1) * 0.55
            ym = y + SLOPE * 0.55
            out.append(f'<line x1="{x1}" y1="{y}" x2="{xm:.1f}" y2="{ym:.1f}" stroke="{colour}" stroke-width="2" '
                       'stroke-dasharray="6,3"/>')
            out.append(f'<path d="M{xm - 7:.1f},{ym - 7:.1f} L{xm + 7:.1f},{ym + 7:.1f} M{xm - 7:.1f},{ym + 7:.1f} '
                       f'L{xm + 7:.1f},{ym - 7:.1f}" stroke="{colour}" stroke-width="3" class="tcplab-lost"/>')
        else:
            out.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y + SLOPE}" stroke="{colour}" stroke-width="2" '
                       'marker-end="url(#tl-arrow)"/>')
        out.append(f'<text x="{(LEFT_X + RIGHT_X) / 2}" y="{y - 2}" text-anchor="middle" fill="{colour}" '
                   f'class="tcplab-seg">{label}</text>')
        extra = (["lost on the wire"] if lost else []) + ([notes[i]] if i in notes else [])
        if extra:
            out.append(f'<text x="{NOTE_X}" y="{y + 12}" fill="#b00020">{escape("; ".join(extra))}</text>')
    if missing:
        y = TOP + len(segs) * ROW
        out.append(f'<text x="{(LEFT_X + RIGHT_X) / 2}" y="{y + 6}" text-anchor="middle" fill="#666">'
                   "(no more segments)</text>")
        out.append(f'<text x="{NOTE_X}" y="{y + 6}" fill="#b00020">{escape(missing)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _ep(addr: tuple, family: int) -> str:
    ip, port = addr
    return f"[{ip}]:{port}" if family == 6 else f"{ip}:{port}"
