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
from pathlib import Path

ROW = 38          # vertical distance between segments
TOP = 64          # y of the first arrow
LEFT_X = 190      # client time line
RIGHT_X = 610     # server time line
NOTE_X = 630
SLOPE = 18        # an arrow drops this much: time passes while a segment travels
CHAR_W = 7.9      # width of a character at 13 px in DejaVu Sans Mono (0.6 em), with room to spare


def ladder_svg(conn, notes: dict[int, str] | None = None, missing: str | None = None,
               title: str | None = None) -> str:
    """SVG text for ``conn`` (a :class:`tcplab.Connection`)."""
    notes = notes or {}
    segs = conn.segments
    rows = len(segs) + (1 if missing else 0) + 1
    marks = _state_labels(conn)
    top = TOP + (24 if marks else 0)
    shift = 90 if marks else 0             # room for the states left of the client's time line
    left_x, right_x = LEFT_X + shift, RIGHT_X + shift
    # notes start right of the widest state label of the server, so they never run into one
    server_w = max([_label_width(t) for (_, side), t in marks.items() if side == "server"] + [0])
    note_x = max(NOTE_X + shift, right_x + 10 + server_w + 16)
    note_w = max([len(t) for t in notes.values()] + [len(missing or "")] + [0]) * CHAR_W
    width = int(max(note_x + note_w + 20, 800 + shift))
    height = top + rows * ROW + 40
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
    for x, label in ((left_x, client), (right_x, server)):
        out.append(f'<text x="{x}" y="{top - (40 if marks else 26)}" text-anchor="middle" font-weight="bold">'
                   f'{escape(label)}</text>')
        out.append(f'<line x1="{x}" y1="{top - 16}" x2="{x}" y2="{bottom}" stroke="#333" stroke-width="2"/>')
    out.append(f'<text x="10" y="{top - (40 if marks else 26)}" fill="#666">#   time</text>')
    for i, s in enumerate(segs):
        y = top + i * ROW
        lost = conn.is_lost(i) if conn.received is not None else False
        from_client = conn.side(s) == "client"
        x1, x2 = (left_x, right_x) if from_client else (right_x, left_x)
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
        out.append(f'<text x="{(left_x + right_x) / 2}" y="{y - 2}" text-anchor="middle" fill="{colour}" '
                   f'class="tcplab-seg">{label}</text>')
        extra = (["lost on the wire"] if lost else []) + ([notes[i]] if i in notes else [])
        if extra:
            out.append(f'<text x="{note_x}" y="{y + 12}" fill="#b00020">{escape("; ".join(extra))}</text>')
    for (k, side), text in marks.items():
        y = top + k * ROW - ROW * 0.42
        w = _label_width(text)
        x = left_x - 10 - w if side == "client" else right_x + 10
        out.append(f'<rect x="{x:.0f}" y="{y - 12:.0f}" width="{w:.0f}" height="17" rx="4" fill="#eaf4ea" '
                   f'stroke="#1b7f3b" stroke-width="0.8" class="tcplab-state"/>')
        out.append(f'<text x="{x + 5:.0f}" y="{y + 1:.0f}" fill="#1b5e2b" font-size="12">{escape(text)}</text>')
    if missing:
        y = top + len(segs) * ROW
        out.append(f'<text x="{(left_x + right_x) / 2}" y="{y + 6}" text-anchor="middle" fill="#666">'
                   "(no more segments)</text>")
        out.append(f'<text x="{note_x}" y="{y + 6}" fill="#b00020">{escape(missing)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _ep(addr: tuple, family: int) -> str:
    ip, port = addr
    return f"[{ip}]:{port}" if family == 6 else f"{ip}:{port}"


def _label_width(text: str) -> float:
    """Width of a state label's box (12 px text)."""
    return len(text) * 7.4 + 10


def _state_labels(conn) -> dict[tuple[int, str], str]:
    """``(k, side) -> "A -> B"``: each side's states from the kernel's record, placed just above
    segment k (the first segment after the change; the state before the exchange goes with the
    first)."""
    out: dict[tuple[int, str], list[str]] = {}
    times = [s.time for s in conn.segments]
    for t, side, state in conn.state_marks():
        k = 0 if t == float("-inf") else sum(1 for x in times if x <= t)
        out.setdefault((k, side), []).append(state)
    return {key: " -> ".join(states) for key, states in out.items()}


def exchange_files(exchange: list, folder: Path, stem: str, title: str) -> list[Path]:
    """A scripted peer's exchange (:attr:`tcplab.lab.pkt.Outcome.exchange`) kept for people to
    look at: ``STEM.pcap`` and ``ladder-STEM.svg`` in ``folder``."""
    from ..lab.pkt import Outcome
    from ..lab.pkt_suite import write_pcap
    from ..observe.trace import Trace
    pcap = write_pcap(Outcome(Path(stem), 4, "", 0.0, exchange=exchange), Path(folder) / f"{stem}.pcap")
    out = [pcap]
    for conn in Trace.from_pcap(pcap).connections()[:1]:
        svg = Path(folder) / f"ladder-{stem}.svg"
        svg.write_text(ladder_svg(conn, title=title))
        out.append(svg)
    return out
