"""Grading a predicted exchange against what the kernels really did, field by field.

A prediction is the project's relative notation, one segment per line in the order they were
put on the wire (a segment lost on the way is still written: it was sent)::

    > S 0:0(0)
    < S. 0:0(0) ack 1
    > . 1:1(0) ack 1

Each line is compared with the observed segment at the same place on five fields: direction,
flags, seq, length and ack (a field left out counts as wrong; the ack of a segment without the
ACK flag is right when both have none).  The credit is the share of right fields over the
longer of the two lists, so a missing or an extra line costs a whole segment.

A recovery answer (:func:`parse_answer`) is one line naming the mechanism that repairs a loss and
the ssthresh it leaves: ``timeout 7``.  Both parsers are what the graders and the handouts'
self-tests read a student's file with.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ..observe.expect import parse_line

FIELDS = ("direction", "flags", "seq", "length", "ack")
MAX_LINES = 200


@dataclass
class Prediction:
    fraction: float                      # 0.0 .. 1.0 of the points
    right: int                           # fields right
    total: int                           # fields counted
    rows: list[str] = field(default_factory=list)   # one line of feedback per segment

    def feedback(self) -> str:
        return "\n".join(self.rows)

    def award(self, score, points: float) -> None:
        """Partial credit in a graded test (its ``score`` fixture) for the share of fields right,
        where some but not all are."""
        earned = round(points * self.fraction, 2)
        if self.fraction < 1 and earned > 0:
            score.partial(earned, f"{self.right} of {self.total} fields right")


def parse_prediction(text: str) -> list:
    """The prediction's lines as specs; a line that cannot be read raises ConfigError naming it."""
    specs = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.split("#", 1)[0].strip():
            continue
        try:
            spec = parse_line(raw, n)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(f"line {n}:", f"line {n} {raw.strip()!r}:", 1)) from None
        if (spec.lo, spec.hi) != (1, 1):
            raise ConfigError(f"line {n} {raw.strip()!r}: write every segment on a line of its own (no "
                              "repeat marks such as + * ? {n} in a prediction)")
        specs.append(spec)
        if len(specs) > MAX_LINES:
            raise ConfigError(f"more than {MAX_LINES} segments predicted: the scenarios have far fewer")
    if not specs:
        raise ConfigError("the prediction is empty: write one segment per line, e.g. '> S 0:0(0)'")
    return specs


def _fields(conn, spec, seg) -> list[tuple[str, bool, str]]:
    """(field, right?, what was observed) for the five fields."""
    side = "client" if spec.direction == ">" else "server"
    rs, ra = conn.rel_seq(seg), conn.rel_ack(seg)
    return [
        ("direction", conn.side(seg) == side, conn.arrow(seg)),
        ("flags", spec.flags == seg.flags, seg.letters),
        ("seq", spec.seq is not None and spec.seq == rs, str(rs)),
        ("length", spec.length is not None and spec.length == seg.length, str(seg.length)),
        ("ack", (spec.ack == ra) if (spec.ack is not None or ra is not None) else True,
         "none" if ra is None else str(ra)),
    ]


def grade_prediction(text: str, conn) -> Prediction:
    """Compare a prediction (text) with a :class:`tcplab.Connection`, segment by segment."""
    specs = parse_prediction(text)
    segs = conn.segments
    n = max(len(specs), len(segs))
    right, rows = 0, []
    for i in range(n):
        spec = specs[i] if i < len(specs) else None
        seg = segs[i] if i < len(segs) else None
        observed = conn.line(seg) + ("   (lost on the wire)" if conn.received is not None and conn.is_lost(i)
                                     else "") if seg is not None else None
        if spec is None:
            rows.append(f"segment {i + 1}: missing from your prediction; observed {observed}")
            continue
        if seg is None:
            rows.append(f"segment {i + 1}: you wrote {spec.render()!r}, but no such segment was sent")
            continue
        checks = _fields(conn, spec, seg)
        ok = sum(1 for _, good, _ in checks if good)
        right += ok
        if ok == len(FIELDS):
            rows.append(f"segment {i + 1}: {spec.render()}   right")
        else:
            wrong = ", ".join(f"{name} (observed {obs})" for name, good, obs in checks if not good)
            rows.append(f"segment {i + 1}: you wrote {spec.render()!r}; observed {observed}: wrong {wrong}")
    total = n * len(FIELDS)
    return Prediction(round(right / total, 4), right, total, rows)


# -- recovery answers: '<recovery> <ssthresh>' ------------------------------------------
RECOVERIES = ("fast_retransmit", "tail_loss_probe", "timeout")


@dataclass
class Answer:
    recovery: str
    ssthresh: int | None        # None: "none", nothing lowered it


def parse_answer(name: str, text: str) -> Answer:
    lines = [(n, line.split("#", 1)[0].split()) for n, line in enumerate(text.splitlines()[:1000], 1)]
    lines = [(n, words) for n, words in lines if words]
    if len(lines) != 1:
        raise ConfigError(f"{name}: write exactly one line, '<recovery> <ssthresh>' (e.g. 'timeout 7'); "
                          f"found {len(lines)} lines that are not comments")
    n, words = lines[0]
    if len(words) != 2:
        raise ConfigError(f"{name} line {n}: two words, '<recovery> <ssthresh>', not {' '.join(words)[:80]!r}")
    recovery, value = words[0].lower(), words[1].lower()
    if recovery not in RECOVERIES:
        raise ConfigError(f"{name} line {n}: {words[0][:40]!r} is not a recovery: write fast_retransmit, "
                          "tail_loss_probe or timeout")
    if value == "none":
        return Answer(recovery, None)
    if not value.isdigit() or len(value) > 6:
        raise ConfigError(f"{name} line {n}: the ssthresh is a number of segments (e.g. 7), or 'none' if "
                          f"nothing lowered it; not {words[1][:40]!r}")
    return Answer(recovery, int(value))
