"""Predicting the kernel (assignment 5): a student's packetdrill script, graded on the real kernel.

A *template* is a packetdrill script holding a scenario's given lines: the segments the peer
injects (``<``), the system calls, and ``= ?`` where the student is to predict a call's result.
It has no ``>`` lines: those are the student's.  A *prediction* is the template with the ``>``
lines written in, where the student thinks the kernel sends each segment, and every ``?``
replaced by a result (``= 10``, ``= -1 ECONNRESET``).

A student's text is never run.  :func:`read_prediction` checks it against the template (nothing
but ``>`` lines and results may differ; no shell lines, Python blocks, option lines or includes;
bounded size) and raises ConfigError naming the line; :func:`grade` compares it, line by line,
with what the kernel did when the *template* ran in record mode
(:func:`tcplab.lab.pkt.record_script`): every segment the kernel sent, after which given line,
and each asked result.  Each ``>`` line earns a point for each of five fields (time, flags, seq,
ack, options) against the kernel's segment it is paired with: the pairing, in order, that gets
the most fields right, so a missing or an extra line costs one segment, not the rest of the
script; each result is one more.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ConfigError
from ..lab.pkt import MOD, Recording, render, render_line
from ..script import Event, Script, parse_script
from .predict import Prediction

MAX_BYTES = 64 * 1024
MAX_LINES = 400
MAX_SEGMENTS = 200
FIELDS = ("time", "flags", "seq", "ack", "options")
PERCENT = 12.5                       # of the time since the line before: packetdrill's tolerance
_ASKED = re.compile(r"=\s*\?\s*$")
#: fd-returning calls: their result is the script's own fd number, nothing to predict
_FD_CALLS = {"socket", "accept"}


def _code_of(line: str) -> str:
    return line.split("//", 1)[0].rstrip()


def _read(text: str, name: str) -> tuple[Script, frozenset]:
    """The script, each ``= ?`` read as ``= 0``, and the lines that had one."""
    lines, asked = [], set()
    for n, line in enumerate(text.splitlines(), 1):
        code = _code_of(line)
        m = _ASKED.search(code)
        if m:
            asked.add(n)
            line = code[:m.start()] + "= 0" + line[len(code):]
        lines.append(line)
    return parse_script("\n".join(lines) + "\n", Path(name)), frozenset(asked)


@dataclass
class Template:
    """A scenario's given lines (``path``): ``script`` with ``?`` read as 0, ``asked`` its ``= ?`` lines."""
    path: Path
    script: Script
    asked: frozenset

    @classmethod
    def load(cls, path: str | Path) -> "Template":
        path = Path(path)
        script, asked = _read(path.read_text(), path.name)
        for ev in script.events:
            if ev.kind == "packet" and ev.packet.direction == ">":
                raise ConfigError(f"{path}:{ev.line}: a template has no > lines: they are the students' to write")
            if ev.line in asked and (ev.kind != "syscall" or ev.syscall.name in _FD_CALLS):
                raise ConfigError(f"{path}:{ev.line}: '= ?' asks for a system call's result; this line's "
                                  "result is not one to predict (socket() and accept() return the script's fd)")
        return cls(path, script, asked)

    @property
    def given(self) -> list[Event]:
        return self.script.events

    @property
    def commands(self) -> frozenset:
        """Its shell lines: the only ones a prediction may hold (as given)."""
        s = self.script
        return frozenset([*s.init_commands, *([s.cleanup_command] if s.cleanup_command else []),
                          *(ev.text for ev in s.events if ev.kind == "command")])


@dataclass
class ScriptPrediction:
    """What a student wrote: each ``>`` line; each asked result (None: still ``?``); the
    student's own line of each given one; the order of both."""
    sent: list[Event] = field(default_factory=list)
    results: dict[int, tuple[int, str] | None] = field(default_factory=dict)
    line_of: dict[int, int] = field(default_factory=dict)     # template line -> student's line
    order: list[tuple[str, int]] = field(default_factory=list)  # ("given", template line) | ("sent", index)


def _hostile(script: Script, text: str, commands: frozenset | None) -> str | None:
    """What a prediction may not hold, by line: it is text to compare, never to run.  Its shell
    lines can only be the template's own (``commands``; None: any, for a student's own machine)."""
    raw = text.splitlines()

    def first(pred) -> int:
        return next((n for n, line in enumerate(raw, 1) if pred(_code_of(line).strip())), 0)
    mine = [*script.init_commands, *([script.cleanup_command] if script.cleanup_command else [])]
    theirs = [ev for ev in script.events if ev.kind == "command"]
    if commands is not None:
        for c in mine:
            if c not in commands:
                return f"line {first(lambda s: c in s)}: shell commands (`...`) are not allowed in a prediction"
        for ev in theirs:
            if ev.text not in commands:
                return f"line {ev.line}: shell commands (`...`) are not allowed in a prediction"
    if script.options:
        return (f"line {first(lambda s: s.startswith('--'))}: option lines (--name=value) are not allowed in a "
                "prediction")
    for ev in script.events:
        if ev.kind == "code":
            return f"line {ev.line}: Python blocks (%{{ }}%) are not allowed in a prediction"
        if ev.kind in ("other_packet", "refused"):
            return f"line {ev.line}: only TCP segments and the template's system calls belong in a prediction"
    return None


def _same(given: Event, mine: Event, asked: bool) -> bool:
    if given.kind != mine.kind or given.time != mine.time:
        return False
    if given.kind == "packet":
        return replace(given.packet, line=0) == replace(mine.packet, line=0)
    if given.kind == "syscall":
        a, b = given.syscall, mine.syscall
        if asked:
            return (a.name, a.args) == (b.name, b.args)
        return (a.name, a.args, a.result, a.errno) == (b.name, b.args, b.result, b.errno)
    return given.text == mine.text


def read_script(text: str, name: str = "prediction",
                commands: frozenset | None = frozenset()) -> tuple[Script, frozenset]:
    """A prediction as a script (each ``= ?`` read as 0) and its ``= ?`` lines, once it is known to
    be only text to compare: bounded in size, with no shell line, Python block, option line or
    include.  ConfigError names the line and the fix."""
    size = len(text.encode(errors="replace"))
    if size > MAX_BYTES:
        raise ConfigError(f"{name} is {size // 1024} KiB: a prediction is at most {MAX_BYTES // 1024} KiB")
    if text.count("\n") > MAX_LINES:
        raise ConfigError(f"{name} has {text.count(chr(10))} lines: a prediction is at most {MAX_LINES}")
    for n, line in enumerate(text.splitlines(), 1):
        if re.match(r"\s*#\s*include\b", line):
            raise ConfigError(f"{name} line {n}: includes are not allowed in a prediction")
    try:
        script, asked = _read(text, name)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace(f"{name}:", f"{name} line ", 1)) from None
    bad = _hostile(script, text, commands)
    if bad:
        raise ConfigError(f"{name} {bad}")
    return script, asked


def read_prediction(template: Template, text: str, name: str = "prediction") -> ScriptPrediction:
    """Check a student's script against the template; ConfigError names the line and the fix."""
    script, asked = read_script(text, name, template.commands)
    if script.init_commands != template.script.init_commands:
        raise ConfigError(f"{name}: the template's shell lines before its first event are given and must stay as "
                          "they are")
    given = template.given
    out = ScriptPrediction()
    i = 0
    for ev in script.events:
        if ev.kind == "packet" and ev.packet.direction == ">":
            if len(out.sent) >= MAX_SEGMENTS:
                raise ConfigError(f"{name}: more than {MAX_SEGMENTS} > lines: the scenario has far fewer")
            out.order.append(("sent", len(out.sent)))
            out.sent.append(ev)
            continue
        if i >= len(given):
            raise ConfigError(f"{name} line {ev.line}: {ev.source!r} is not in the template: only > lines and the "
                              "results of '= ?' calls are yours to write")
        g = given[i]
        if not _same(g, ev, g.line in template.asked):
            raise ConfigError(f"{name} line {ev.line}: this line is given and must stay as the template has it: "
                              f"{g.source!r}")
        if g.line in template.asked:
            sc = ev.syscall
            out.results[g.line] = None if ev.line in asked else (sc.result, sc.errno or "")
        out.line_of[g.line] = ev.line
        out.order.append(("given", g.line))
        i += 1
    if i < len(given):
        raise ConfigError(f"{name}: the template's line {given[i].line} is missing: {given[i].source!r} "
                          "(keep every given line, in order)")
    return out


# -- grading ------------------------------------------------------------------------------------

def _options_right(p, frame, remote_isn: int) -> bool:
    if p.any_options:                    # <...> predicts nothing
        return False
    want, got = list(p.options or ()), frame.options
    if [o.kind for o in want] != [k for k, _ in got]:
        return False
    for o, (k, v) in zip(want, got):
        if k == "TS":                    # its values are the kernel's clock: not predicted
            continue
        if k == "sack":
            v = tuple(((a - remote_isn) % MOD, (b - remote_isn) % MOD) for a, b in v)
        if o.value != v:
            return False
    return True


def _fields(p, frame, seq: int, ack: int, expected: float | None, actual: float, tol: float,
            remote_isn: int) -> list[tuple[str, bool]]:
    return [
        ("time", expected is not None and abs(actual - expected) <= tol),
        ("flags", p.flags == frame.flags),
        ("seq", p.seq == seq and p.length == frame.length),
        ("ack", p.ack == ack if "ACK" in frame.flags else p.ack in (None, 0)),
        ("options", _options_right(p, frame, remote_isn)),
    ]


def _expected_times(pred: ScriptPrediction, rec: Recording) -> list[tuple[float | None, float]]:
    """Each ``>`` line's time as its script says (None for ``*`` and ranges) and the time of the
    line before it: a relative time counts from the given line before as it really ran, or from
    the time the student's own line before says."""
    out: list = [None] * len(pred.sent)
    prev = 0.0
    for kind, key in pred.order:
        if kind == "given":
            prev = rec.started.get(key, prev)
            continue
        t = pred.sent[key].time
        at = None if (t.kind == "any" or t.range) else (t.start if t.kind == "abs" else prev + t.start)
        out[key] = (at, prev)
        prev = at if at is not None else prev
    return out


def _align(n: int, m: int, score) -> list[tuple[int | None, int | None]]:
    """The order-keeping pairing of n predicted lines with m segments that gets the most right
    fields, then the most pairs (a pair counts once where two unpaired count twice)."""
    best = [[(0, 0)] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            r, k = best[i + 1][j + 1]
            best[i][j] = max(best[i + 1][j], best[i][j + 1], (r + score(i, j), k + 1))
    pairs, i, j = [], 0, 0
    while i < n or j < m:
        if i < n and j < m:
            r, k = best[i + 1][j + 1]
            if best[i][j] == (r + score(i, j), k + 1):
                pairs.append((i, j))
                i, j = i + 1, j + 1
                continue
        if i < n and (j == m or best[i][j] == best[i + 1][j]):
            pairs.append((i, None))
            i += 1
        else:
            pairs.append((None, j))
            j += 1
    return pairs


def grade(template: Template, pred: ScriptPrediction, rec: Recording, *, tolerance_usecs: int) -> Prediction:
    """The share of right fields: five for each segment, predicted or sent (a ``>`` line and the
    kernel's segment it is paired with, in order, count once), one for each asked result."""
    kernel = [(t, frame, after, seq, ack) for t, d, frame, after, seq, ack in rec.exchange if d == ">"]
    times = _expected_times(pred, rec)
    tol0 = tolerance_usecs / 1e6

    def checks(i: int, j: int) -> list[tuple[str, bool]]:
        p = pred.sent[i].packet
        at, frame, _, seq, ack = kernel[j]
        expected, prev = times[i]
        tol = max(tol0, PERCENT / 100 * max(0.0, (expected or prev) - prev))
        return _fields(p, frame, seq, ack, expected, at, tol, rec.remote_isn)

    cache: dict = {}

    def score(i: int, j: int) -> int:
        if (i, j) not in cache:
            cache[(i, j)] = sum(good for _, good in checks(i, j))
        return cache[(i, j)]

    where = {0: "before the first given line"} | {tl: f"after line {sl}" for tl, sl in pred.line_of.items()}
    rows: list[tuple[float, str]] = []
    right = total = 0
    for i, j in _align(len(pred.sent), len(kernel), score):
        total += len(FIELDS)
        if j is None:
            ev = pred.sent[i]
            rows.append((times[i][0] if times[i][0] is not None else times[i][1],
                         f"line {ev.line}: {render_line(ev.packet)}\n    the kernel sent no such segment"))
            continue
        at, frame, after, seq, ack = kernel[j]
        sent = f"> {render(frame, seq, ack)}"
        if i is None:
            rows.append((at, f"{where.get(after, '')}: the kernel sent {sent} at {at:.3f} s; your prediction has "
                             "no line for it"))
            continue
        ev = pred.sent[i]
        good = checks(i, j)
        ok = sum(g for _, g in good)
        right += ok
        mine = f"line {ev.line}: {render_line(ev.packet)}"
        if ok == len(FIELDS):
            rows.append((at, f"{mine}   right"))
            continue
        expected = times[i][0]
        wrong = ", ".join(name for name, g in good if not g)
        why = " (write a time: * and ranges predict none)" if expected is None else \
            " (<...> predicts no options: write them)" if ev.packet.any_options else ""
        said = f" (you said {expected:.3f} s)" if expected is not None else ""
        rows.append((at, f"{mine}\n    the kernel sent {sent} at {at:.3f} s{said}\n    wrong: {wrong}{why}"))
    for line, answer in pred.results.items():
        total += 1
        actual = rec.results.get(line)
        shown = "nothing (the call did not return)" if actual is None else \
            f"{actual[0]}" + (f" {actual[1]}" if actual[0] < 0 else "")
        at = f"line {pred.line_of.get(line, line)}: {template.script.line(line).split('=')[0].strip()}"
        when = rec.started.get(line, 0.0)
        if answer is None:
            rows.append((when, f"{at} = ?   not answered; the kernel returned {shown}"))
        elif actual is not None and answer[0] == actual[0] and (actual[0] >= 0 or answer[1] == actual[1]):
            right += 1
            rows.append((when, f"{at} = {shown}   right"))
        else:
            yours = f"{answer[0]}" + (f" {answer[1]}" if answer[1] else "")
            rows.append((when, f"{at} = {yours}   wrong: the kernel returned {shown}"))
    flat = [text for _, text in sorted(rows, key=lambda r: r[0])]
    if not total:
        return Prediction(1.0, 0, 0, flat)
    return Prediction(round(right / total, 4), right, total, flat)
