"""RFC 9293's TCP state diagram (section 3.3.2, Figure 5), drawn from what labs observed.

Every transition of the figure, plus the resets the RFC's text describes, is a row of
:data:`TRANSITIONS`.  A lab shows a transition when its JUnit XML lists it: the plugin records
``transitions`` (``A>B``, from the kernel's state record and sock_diag pollers) and labs declare
what they assert with the ``shows`` fixture (``shows("CLOSING", "CLOSED", on="RST")``), which
the plugin writes as the ``shows`` property: that is how a lab shows what the record cannot see
(a listener closing, a request socket dropped, a reset).  :func:`diagram_svg` colours each arrow
by where it was observed; :func:`table_md` lists every row with its labs and results.  Transitions that Linux or the
sockets API cannot produce carry the reason instead of a lab.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from html import escape
from pathlib import Path


@dataclass(frozen=True)
class Transition:
    src: str
    dst: str
    event: str
    rst: bool = False                 # caused by receiving a RST (RFC text, not the figure)
    impossible: str | None = None     # why no lab can produce it on Linux / with sockets

    @property
    def key(self) -> str:
        return f"{self.src}>{self.dst}" + (" on RST" if self.rst else "")


TRANSITIONS = [
    Transition("CLOSED", "LISTEN", "passive OPEN: listen()"),
    Transition("CLOSED", "SYN_SENT", "active OPEN: connect(), snd SYN"),
    Transition("LISTEN", "SYN_RECV", "rcv SYN, snd SYN-ACK"),
    Transition("LISTEN", "SYN_SENT", "SEND, snd SYN", impossible=(
        "the sockets API has no SEND on a listening socket: connect() on it fails with EISCONN and "
        "send() with EPIPE (labs/test_states.py::test_a_listener_cannot_start_a_connection)")),
    Transition("LISTEN", "CLOSED", "CLOSE: close() the listener"),
    Transition("SYN_SENT", "SYN_RECV", "rcv SYN, snd SYN-ACK (simultaneous open)"),
    Transition("SYN_SENT", "ESTABLISHED", "rcv SYN-ACK, snd ACK"),
    Transition("SYN_SENT", "CLOSED", "CLOSE, or the SYN retries run out"),
    Transition("SYN_RECV", "ESTABLISHED", "rcv ACK of SYN"),
    Transition("SYN_RECV", "FIN_WAIT_1", "CLOSE, snd FIN"),
    Transition("SYN_RECV", "LISTEN", "rcv RST (passive open)", rst=True),
    Transition("ESTABLISHED", "FIN_WAIT_1", "CLOSE, snd FIN"),
    Transition("ESTABLISHED", "CLOSE_WAIT", "rcv FIN, snd ACK"),
    Transition("FIN_WAIT_1", "FIN_WAIT_2", "rcv ACK of FIN"),
    Transition("FIN_WAIT_1", "CLOSING", "rcv FIN, snd ACK"),
    Transition("FIN_WAIT_1", "TIME_WAIT", "rcv FIN and ACK of FIN, snd ACK"),
    Transition("FIN_WAIT_2", "TIME_WAIT", "rcv FIN, snd ACK"),
    Transition("CLOSING", "TIME_WAIT", "rcv ACK of FIN"),
    Transition("TIME_WAIT", "CLOSED", "timeout 2MSL (Linux: 60 s)"),
    Transition("CLOSE_WAIT", "LAST_ACK", "CLOSE, snd FIN"),
    Transition("LAST_ACK", "CLOSED", "rcv ACK of FIN"),
] + [Transition(s, "CLOSED", "rcv RST", rst=True)
     for s in ("SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "CLOSE_WAIT", "CLOSING", "LAST_ACK")]


def transition(old: str, new: str, *, on: str | None = None) -> Transition:
    """The diagram's transition ``old -> new`` (``on="RST"``: caused by a reset), or a
    ConfigError listing the transitions there are from ``old``."""
    from ..errors import ConfigError
    if on not in (None, "RST"):
        raise ConfigError(f"on={on!r}: the only cause a transition names is on=\"RST\"")
    for t in TRANSITIONS:
        if (t.src, t.dst, t.rst) == (old, new, on == "RST"):
            return t
    there = [f"{t.dst}" + (" (on=\"RST\")" if t.rst else "") for t in TRANSITIONS if t.src == old]
    raise ConfigError(f"{old} -> {new}" + (" on RST" if on else "") + " is not a transition of RFC 9293's diagram; "
                      + (f"from {old}: {', '.join(there)}" if there else f"{old!r} is not one of its states"))


#: box centres of the picture, laid out like the RFC's figure
POS = {"CLOSED": (510, 70), "LISTEN": (510, 180), "SYN_RECV": (210, 290), "SYN_SENT": (840, 290),
       "ESTABLISHED": (510, 400), "FIN_WAIT_1": (210, 520), "CLOSE_WAIT": (840, 520), "CLOSING": (510, 620),
       "FIN_WAIT_2": (210, 720), "LAST_ACK": (840, 720), "TIME_WAIT": (510, 820), "CLOSED ": (840, 900)}
#: the part of the picture the diagram's labels may use (the resets' list and legend are right of it)
AREA = (4, 40, 1060, 950)
#: where a crowded arrow's label goes: (fraction along the arrow, text anchor)
LABEL_AT = {("CLOSED", "SYN_SENT"): (0.62, "start"), ("LISTEN", "SYN_SENT"): (0.5, "end"),
            ("FIN_WAIT_1", "TIME_WAIT"): (0.5, "start"), ("ESTABLISHED", "FIN_WAIT_1"): (0.5, "end"),
            ("ESTABLISHED", "CLOSE_WAIT"): (0.5, "start"), ("FIN_WAIT_1", "CLOSING"): (0.62, "start")}
BOX_W, BOX_H = 150, 36
COLOURS = {"here": "#1b7f3b", "vm": "#1f5fbf", "none": "#999999", "impossible": "#b00020"}


def observed(junit: Path) -> dict[str, list[tuple[str, str, int, bool, int]]]:
    """``key -> [(lab, outcome, how many transitions the lab showed, whether the lab declared
    it, how many runs of the lab passed)]`` from one run's JUnit XML.  A lab declares what it
    asserts (the ``shows`` property); ``transitions`` are what the kernel's record or a poller
    saw in its run, which may include a lab's chance outcomes (two programs that happen to close
    at once)."""
    out: dict[str, list[tuple[str, str, int, bool]]] = defaultdict(list)
    passed: dict[str, int] = defaultdict(int)
    for case in ET.parse(junit).getroot().iter("testcase"):
        props = [(p.get("name"), p.get("value") or "") for p in case.iter("property")]
        outcome = "pass"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "FAIL"
        elif case.find("skipped") is not None:
            continue
        lab = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        passed[_lab_name(lab)] += outcome == "pass"
        seen, declared = set(), set()
        for name, value in props:
            if name == "transitions":
                seen.update(value.split())
            elif name == "shows":
                declared.update(k.strip() for k in value.split(";") if k.strip())
        keys = seen | declared
        for k in keys:
            out[k].append((lab, outcome, len(keys), k in declared))
    return {k: [(*r, passed[_lab_name(r[0])]) for r in rows] for k, rows in out.items()}


def _lab_name(lab: str) -> str:
    return lab.split("::")[-1].split("[")[0]


def _status(t: Transition, here: dict, vm: dict | None) -> str:
    if t.impossible:
        return "impossible"
    if any(r[1] == "pass" for r in here.get(t.key, [])):
        return "here"
    if vm is not None and any(r[1] == "pass" for r in vm.get(t.key, [])):
        return "vm"
    return "none"


def _labs(t: Transition, res: dict) -> list[str]:
    """The passing labs that show ``t``: those that declare it first, then those that showed it
    in a larger share of their runs (a lab's chance outcome shows in some runs only), then the
    most specific (fewest transitions)."""
    best: dict[str, list] = {}
    for lab, outcome, n, declared, runs in res.get(t.key, []):
        if outcome == "pass":
            rank = best.setdefault(_lab_name(lab), [True, 0.0, n])
            rank[0] = rank[0] and not declared
            rank[1] -= 1 / runs
            rank[2] = min(n, rank[2])
    return sorted(best, key=lambda name: (*best[name], name))


def _edge(a: tuple, b: tuple) -> tuple[tuple, tuple]:
    """Where the line from box a's centre to box b's centre leaves a and enters b."""
    (x1, y1), (x2, y2) = a, b
    dx, dy = x2 - x1, y2 - y1

    def clip(dx, dy):
        sx = (BOX_W / 2) / abs(dx) if dx else float("inf")
        sy = (BOX_H / 2 + 4) / abs(dy) if dy else float("inf")
        return min(sx, sy)
    s = clip(dx, dy)
    return (x1 + dx * s, y1 + dy * s), (x2 - dx * s, y2 - dy * s)


LINE_H = 13              # a label's line height
CHAR_W = 6.9             # the widest a character of 11.5 px DejaVu Sans averages in these labels


#: the longest lab name an arrow's label shows whole (the table, docs/states.md, has them all)
NAME_MAX = 38


def _short(name: str) -> str:
    return name if len(name) <= NAME_MAX else name[:NAME_MAX - 1] + "\u2026"


def _box_rect(x: float, y: float) -> tuple[float, float, float, float]:
    return (x - BOX_W / 2, y - BOX_H / 2, x + BOX_W / 2, y + BOX_H / 2)


def _label_rect(x: float, y: float, anchor: str, lines: list[str]) -> tuple[float, float, float, float]:
    """The box a label's lines cover (baseline of the first line at ``y``), a little generous."""
    w = max(len(t) for t in lines) * CHAR_W
    left = {"start": x, "end": x - w, "middle": x - w / 2}[anchor]
    return (left - 2, y - 12, left + w + 2, y + (len(lines) - 1) * LINE_H + 5)


def overlaps(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _arrow(t: Transition, pairs: set) -> tuple:
    """``(x1, y1, x2, y2, off, nx, ny)``: the arrow of ``t`` between its boxes' edges; two arrows
    between the same boxes (SYN_RECV <-> LISTEN) are drawn ``off`` apart along the normal."""
    a = POS[t.src]
    b = POS["CLOSED " if t.dst == "CLOSED" and t.src in ("TIME_WAIT", "LAST_ACK") else t.dst]
    (x1, y1), (x2, y2) = _edge(a, b)
    off = 10 if (t.dst, t.src) in pairs else 0
    nx = ny = 0.0
    if off:
        nx, ny = -(y2 - y1), (x2 - x1)
        n = max((nx * nx + ny * ny) ** 0.5, 1)
        nx, ny = nx / n, ny / n
        x1, y1, x2, y2 = x1 + off * nx, y1 + off * ny, x2 + off * nx, y2 + off * ny
    return x1, y1, x2, y2, off, nx, ny


def crosses(rect: tuple, seg: tuple) -> bool:
    """Whether the line segment ``(x1, y1, x2, y2)`` passes through ``rect``."""
    x1, y1, x2, y2 = seg
    if max(x1, x2) < rect[0] or min(x1, x2) > rect[2] or max(y1, y2) < rect[1] or min(y1, y2) > rect[3]:
        return False
    for i in range(41):
        x, y = x1 + (x2 - x1) * i / 40, y1 + (y2 - y1) * i / 40
        if rect[0] <= x <= rect[2] and rect[1] <= y <= rect[3]:
            return True
    return False


def _place(t: Transition, lines: list[str], arrow: tuple, taken: list, arrows: list) -> tuple[tuple, bool]:
    """Where ``t``'s label goes: beside its arrow, on the arrow's outer side first, at the first
    point along it (from the middle outwards, then further from the arrow) where it runs into no
    box, no other label and no arrow; failing that, the first that runs into no box and no
    label (its white halo then hides the arrow behind it).  Returns ``((x, y, anchor), free)``:
    ``free`` is false where every place runs into something."""
    x1, y1, x2, y2, off, nx, ny = arrow
    anchor = "start" if x2 < x1 else "end"
    if off:
        anchor = "start" if nx > 0 or (nx == 0 and ny < 0) else "end"
    elif abs(x2 - x1) < 5:
        anchor = "start"
    elif abs(y2 - y1) < 5:
        anchor = "middle"
    preferred = LABEL_AT.get((t.src, t.dst))
    fracs = ([preferred[0]] if preferred else []) + [0.5, 0.4, 0.6, 0.3, 0.7, 0.25, 0.75, 0.2, 0.8, 0.15, 0.85]
    anchors = ([preferred[1]] if preferred else []) + [anchor] + [a for a in ("start", "end") if a != anchor]
    candidates = []
    for gap in (6, 16, 30, 46):
        for a in anchors:
            for frac in fracs:
                mx, my = x1 + (x2 - x1) * frac, y1 + (y2 - y1) * frac
                x = mx + {"start": gap, "end": -gap, "middle": 0}[a]
                if a == "middle":      # a horizontal arrow's label: wholly above it, or below it
                    ys = (my - 2 - gap - (len(lines) - 1) * LINE_H, my + 10 + gap)
                else:
                    ys = (my - 4, my - 18, my + 10)
                candidates += [(x, y, a) for y in ys]
    inside = [c for c in candidates if _within(_label_rect(*c, lines))]
    fits = [c for c in inside if not any(overlaps(_label_rect(*c, lines), o) for o in taken)]
    clear = [c for c in fits if not any(crosses(_label_rect(*c, lines), seg) for seg in arrows)]
    return (clear or fits or inside or candidates)[0], bool(fits)


def _within(rect: tuple) -> bool:
    return AREA[0] <= rect[0] and AREA[1] <= rect[1] and rect[2] <= AREA[2] and rect[3] <= AREA[3]


def diagram_svg(here: dict, vm: dict | None = None, *, kernel: str = "this kernel",
                vm_label: str = "Debian 6.1 (VM)") -> str:
    width, height = 1420, 960
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'font-family="DejaVu Sans, sans-serif" font-size="12">',
           '<defs>' + "".join(
               f'<marker id="ah-{k}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
               f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>'
               for k, c in COLOURS.items()) + '</defs>',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           '<text x="20" y="28" font-size="17" font-weight="bold">TCP states and transitions (RFC 9293, Figure 5) '
           'observed on real kernels</text>']
    drawn = [t for t in TRANSITIONS if not (t.rst and t.dst == "CLOSED")]
    pairs = {(t.src, t.dst) for t in drawn}
    taken = [_box_rect(x, y) for x, y in POS.values()]       # what a label may not run into
    lines_drawn = [_arrow(t, pairs)[:4] for t in drawn]       # what it had better not cross
    taken += [(x2 - 9, y2 - 9, x2 + 9, y2 + 9) for _, _, x2, y2 in lines_drawn]   # nor hide an arrowhead
    texts, jobs = [], []
    for t in drawn:
        st = _status(t, here, vm)
        x1, y1, x2, y2, off, nx, ny = _arrow(t, pairs)
        dash = {"none": ' stroke-dasharray="6,4"', "impossible": ' stroke-dasharray="2,4"'}.get(st, "")
        out.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="{COLOURS[st]}" '
                   f'stroke-width="{2.2 if st in ("here", "vm") else 1.4}"{dash} marker-end="url(#ah-{st})" '
                   f'class="tr tr-{st}" data-transition="{escape(t.key)}"/>')
        labs = _labs(t, here) or (_labs(t, vm) if vm else [])
        lines = [t.event] + (["impossible on Linux"] if st == "impossible" else [_short(labs[0])] if labs else [])
        jobs.append((t, st, lines, (x1, y1, x2, y2, off, nx, ny)))
    # The paired arrows (SYN_RECV <-> LISTEN) have the least room: their labels are placed first.
    # A label that found no free place is moved to the front and the placing starts again.
    order = sorted(jobs, key=lambda j: j[3][4] == 0)
    for _ in range(len(order)):
        placed, used, stuck = [], list(taken), None
        for job in order:
            spot, free = _place(job[0], job[2], job[3], used, lines_drawn)
            used.append(_label_rect(*spot, job[2]))
            placed.append((job, spot))
            stuck = stuck or (None if free else job)
        if stuck is None:
            break
        order.remove(stuck)
        order.insert(0, stuck)
    for (t, st, lines, _), (x, y, anchor) in placed:
        for i, text in enumerate(lines):
            style = ' font-style="italic"' if i else ""
            # a white halo under the letters: an arrow passing behind a label never crosses its text
            texts.append(f'<text x="{x:.0f}" y="{y + i * LINE_H:.0f}" text-anchor="{anchor}" fill="{COLOURS[st]}"'
                         f'{style} font-size="{11 if i else 11.5}" stroke="white" stroke-width="3" '
                         f'paint-order="stroke" class="label">{escape(text)}</text>')
    out += texts
    for name, (x, y) in POS.items():
        out.append(f'<rect x="{x - BOX_W / 2}" y="{y - BOX_H / 2}" width="{BOX_W}" height="{BOX_H}" rx="8" '
                   'fill="#f4f6fb" stroke="#1f3b73" stroke-width="1.5"/>')
        out.append(f'<text x="{x}" y="{y + 5}" text-anchor="middle" font-weight="bold">{escape(name.strip())}</text>')
    # the resets: one row each, at the right
    x0, y0 = 1080, 150
    out.append(f'<text x="{x0}" y="{y0}" font-weight="bold">rcv RST: every synchronized state -&gt; CLOSED</text>')
    for i, t in enumerate(t for t in TRANSITIONS if t.rst and t.dst == "CLOSED"):
        st = _status(t, here, vm)
        y = y0 + 24 + i * 22
        dash = ' stroke-dasharray="6,4"' if st == "none" else ""
        out.append(f'<line x1="{x0}" y1="{y - 4}" x2="{x0 + 34}" y2="{y - 4}" stroke="{COLOURS[st]}" stroke-width="2"'
                   f'{dash} marker-end="url(#ah-{st})" class="tr tr-{st}" data-transition="{escape(t.key)}"/>')
        labs = _labs(t, here) or (_labs(t, vm) if vm else [])
        out.append(f'<text x="{x0 + 42}" y="{y}" fill="{COLOURS[st]}">{escape(t.src)}'
                   f'{" (" + escape(labs[0]) + ")" if labs else ""}</text>')
    # legend
    ly = 380
    out.append(f'<text x="{x0}" y="{ly}" font-weight="bold">legend</text>')
    for i, (k, text) in enumerate((("here", f"observed on {kernel}"), ("vm", f"observed only on {vm_label}"),
                                   ("none", "not observed by any lab"), ("impossible", "cannot happen on Linux"))):
        y = ly + 22 + i * 20
        dash = {"none": ' stroke-dasharray="6,4"', "impossible": ' stroke-dasharray="2,4"'}.get(k, "")
        out.append(f'<line x1="{x0}" y1="{y - 4}" x2="{x0 + 34}" y2="{y - 4}" stroke="{COLOURS[k]}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{x0 + 42}" y="{y}">{escape(text)}</text>')
    out.append(f'<text x="{x0}" y="{ly + 120}" fill="#555">Labels: the event, then a lab that shows it.</text>')
    out.append(f'<text x="{x0}" y="{ly + 136}" fill="#555">Table and reasons: docs/states.md</text>')
    out.append("</svg>")
    return "\n".join(out)


def table_md(here: dict, vm: dict | None = None, *, vm_label: str = "Debian 6.1 (VM)") -> str:
    """The table: every transition, its most specific labs (three at most), the results per run."""
    head = "| transition | event | labs | this kernel |" + (f" {vm_label} |" if vm is not None else "")
    lines = [head, "|---" * (4 + (vm is not None)) + "|"]

    def verdict(res, t):
        got = res.get(t.key, [])
        p = sum(r[1] == "pass" for r in got)
        f = sum(r[1] == "FAIL" for r in got)
        return ("-" if not got else f"{p} pass" + (f", **{f} FAIL**" if f else ""))
    for t in TRANSITIONS:
        arrow = f"{t.src} -> {t.dst}"
        if t.impossible:
            lines.append(f"| {arrow} | {t.event} | impossible: {t.impossible} | - |" + (" - |" if vm is not None else ""))
            continue
        labs = _labs(t, here) + [lab for lab in (_labs(t, vm) if vm else []) if lab not in _labs(t, here)]
        shown = "<br>".join(labs[:3]) + (f"<br>(and {len(labs) - 3} more)" if len(labs) > 3 else "")
        lines.append(f"| {arrow} | {t.event} | {shown or '**none**'} | {verdict(here, t)} |"
                     + (f" {verdict(vm, t)} |" if vm is not None else ""))
    return "\n".join(lines)
