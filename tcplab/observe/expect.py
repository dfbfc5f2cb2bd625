"""Expected exchanges in packetdrill-style relative notation, and where an observed one departs.

One line per segment, numbers relative to each side's ISN::

    > S 0:0(0)                      # client -> server: SYN, seq 0, no payload
    < S. 0:0(0) ack 1               # server -> client: SYN+ACK
    > . 1:1(0) ack 1                # client -> server: pure ACK

Fields after the flags may be left out, and what is left out is not checked: ``> S``, or
``> P. 1:6(5) ack 1``.  ``win N`` and ``<mss 1460,sackOK,TS,nop,wscale 7>`` are checked only when
written (an option written without a value matches any value).  Flags are tcpdump's letters
(S F R P U E W, ``.`` for ACK) and must match exactly.

A trailing mark repeats a line, folding retransmissions of one segment:
``+`` one or more, ``*`` zero or more, ``?`` zero or one, ``{n}`` exactly n, ``{n,m}`` n to m.

Blocks (a header line ending in ``:``, its lines indented below it)::

    any order:                      # these segments, interleaved in any order
        > S 0:0(0) +                #   (concurrent timers: SYN and SYN-ACK retransmissions)
        < S. 0:0(0) ack 1 +
    either:                         # one of several alternative exchanges
        < F. 1:1(0) ack 2
    or:
        < . 1:1(0) ack 2
        < F. 1:1(0) ack 2

``#`` starts a comment.  By default the whole exchange must match; ``complete=False`` allows
segments after the script's end.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Union

from ..errors import ConfigError
from ..errors import hide_config_errors as __tracebackhide__  # noqa: F401  (pytest)
from ..notation import MOD, letters, render_options
from ..script import parse_segment

if TYPE_CHECKING:
    from .trace import Segment


@dataclass(frozen=True)
class Seen:
    """One observed segment as an expectation reads it: who sent it and its sequence and
    acknowledgement numbers relative to each side's ISN.  The trace makes these
    (:meth:`tcplab.Connection.seen`); an expectation never calls back into the connection."""
    seg: Segment
    side: str                  # "client" or "server": who sent it
    rel_seq: int
    rel_ack: int | None        # None: no ACK flag

    @property
    def arrow(self) -> str:
        return ">" if self.side == "client" else "<"

_LINE = re.compile(
    r"""^(?P<dir>[<>])\s+(?P<flags>[^\s]+)
        (?:\s+(?P<seq>\d+):(?P<end>\d+)\((?P<len>\d+)\))?
        (?:\s+ack\s+(?P<ack>\d+))?
        (?:\s+win\s+(?P<win>\d+))?
        (?:\s+<(?P<opts>[^>]*)>)?
        (?:\s+(?P<quant>[+*?]|\{\d+(?:,\d+)?\}))?\s*$""", re.X)

#: The textbook's three-way handshake (RFC 9293, section 3.5), numbers relative to each side's ISN:
#: ``conn.expect(HANDSHAKE + """ ...what follows... """)``.
HANDSHAKE = """
    > S 0:0(0)              # SYN: seq = x (relative 0), no other flag
    < S. 0:0(0) ack 1       # SYN+ACK: seq = y, ack = x+1
    > . 1:1(0) ack 1        # ACK: seq = x+1, ack = y+1
"""

_QUANT_SUFFIX = re.compile(r"\s*(?:[+*?]|\{\d+(?:,\d+)?\})\s*$")
_OPT_NAMES = {"mss": "MSS", "sackOK": "SAckOK", "TS": "Timestamp", "nop": "NOP", "wscale": "WScale",
              "sack": "SAck", "eol": "EOL"}


@dataclass(frozen=True)
class Spec:
    """One expected segment."""
    text: str
    direction: str
    flags: frozenset
    seq: int | None = None
    end: int | None = None
    length: int | None = None
    ack: int | None = None
    win: int | None = None
    options: tuple | None = None
    lo: int = 1
    hi: int = 1
    lineno: int = 0

    def differences(self, seen: Seen) -> list[tuple[str, str, str]]:
        """(field, expected, actual) for every field that differs; empty when it matches."""
        d = []
        seg = seen.seg
        side = "client" if self.direction == ">" else "server"
        if seen.side != side:
            d.append(("direction", f"{self.direction} ({side} sends)", f"{seen.arrow} ({seen.side} sends)"))
        if seg.flags != self.flags:
            d.append(("flags", f'"{letters(self.flags)}"', f'"{seg.letters}"'))
        rs = seen.rel_seq
        if self.seq is not None and rs != self.seq:
            d.append(("seq", str(self.seq), str(rs)))
        if self.length is not None and seg.length != self.length:
            d.append(("length", str(self.length), str(seg.length)))
        if self.end is not None and self.length is None and (rs + seg.length) % MOD != self.end:
            d.append(("end", str(self.end), str((rs + seg.length) % MOD)))
        if self.ack is not None:
            ra = seen.rel_ack
            if ra != self.ack:
                d.append(("ack", str(self.ack), "none (no ACK flag)" if ra is None else str(ra)))
        if self.win is not None and seg.win != self.win:
            d.append(("win", str(self.win), str(seg.win)))
        if self.options is not None:
            got = [(n, v) for n, v in seg.options]
            ok = len(got) == len(self.options) and all(
                gn == en and (ev is None or _opt_value(gv) == ev)
                for (gn, gv), (en, ev) in zip(got, self.options))
            if not ok:
                d.append(("options", f"<{self.options_text()}>", f"<{render_options(seg.options)}>"))
        return d

    def options_text(self) -> str:
        inv = {v: k for k, v in _OPT_NAMES.items()}
        return ",".join(inv.get(n, n) + ("" if v is None else f" {v}") for n, v in self.options or ())

    def render(self) -> str:
        """The line without comment and repeat mark (as it would print for a matching segment)."""
        return _QUANT_SUFFIX.sub("", self.text.split("#")[0].strip())


def _opt_value(v: Any) -> str:
    if isinstance(v, tuple):
        return " ".join(str(x) for x in v)
    return "" if v in (None, b"") else str(v)


@dataclass
class Seq:
    items: list


@dataclass
class Alt:
    branches: list  # of Seq


@dataclass
class AnyOrder:
    specs: list  # of Spec


Node = Union[Spec, Seq, Alt, AnyOrder]


#: the segment notation's option names -> the names a trace's segments carry (Scapy's)
_OPTION_KINDS = {"nop": "NOP", "eol": "EOL", "mss": "MSS", "wscale": "WScale", "sackOK": "SAckOK",
                 "sack": "SAck", "TS": "Timestamp"}


def parse_line(text: str, lineno: int = 0) -> Spec:
    """One expected segment, read by the grammar labs and packetdrill scripts share
    (:func:`tcplab.script.parse_segment`)."""
    body = text.split("#", 1)[0].strip()
    seg = parse_segment(body, lineno)
    opts = None
    if seg.any_options:
        raise ConfigError(f"line {lineno}: '<...>' is what a script writes for any options; in a lab leave "
                          "the options out: they are then not checked")
    if seg.options is not None:
        opts = []
        for o in seg.options:
            if o.kind not in _OPTION_KINDS:
                raise ConfigError(f"line {lineno}: unknown TCP option {o.kind!r}: known are "
                                  + ", ".join(_OPTION_KINDS))
            value = o.value
            if isinstance(value, tuple):     # TS (val, ecr), sack ((start, end), ...)
                value = " ".join(str(x) for v in value for x in (v if isinstance(v, tuple) else (v,)))
            opts.append((_OPTION_KINDS[o.kind], None if value is None else str(value)))
        opts = tuple(opts)
    lo, hi = _quant(seg.repeat, lineno)
    return Spec(text=body, direction=seg.direction, flags=seg.flags, seq=seg.seq, end=seg.end,
                length=seg.length, ack=seg.ack, win=seg.win, options=opts, lo=lo, hi=hi, lineno=lineno)


def _quant(q: str | None, lineno: int) -> tuple[int, int]:
    if q is None:
        return 1, 1
    if q in ("+", "*", "?"):
        return {"+": (1, 10 ** 6), "*": (0, 10 ** 6), "?": (0, 1)}[q]
    nums = [int(x) for x in q.strip("{}").split(",")]
    lo, hi = nums[0], nums[-1]
    if hi < lo or hi == 0:
        raise ConfigError(f"line {lineno}: repeat {q} is empty: use {{n}} or {{n,m}} with 1 <= m and n <= m")
    return lo, hi


def _parse_block(lines: list[tuple[int, int, str]], i: int, indent: int) -> tuple[Seq, int]:
    items: list[Node] = []
    while i < len(lines):
        lineno, ind, text = lines[i]
        if ind < indent:
            break
        # A line indented deeper than its block, not under a header, still belongs to the block
        # (scripts are often concatenated from pieces indented differently).
        head = text.rstrip(":").strip().lower()
        if text.endswith(":") and head in ("any order", "either"):
            body, j = _parse_body(lines, i + 1, ind, lineno)
            if head == "any order":
                bad = [x for x in body.items if not isinstance(x, Spec)]
                if bad:
                    raise ConfigError(f"line {lineno}: 'any order:' holds segment lines only")
                items.append(AnyOrder(body.items))
                i = j
            else:
                branches = [body]
                i = j
                while i < len(lines) and lines[i][1] == ind and lines[i][2].rstrip(":").strip().lower() == "or" \
                        and lines[i][2].endswith(":"):
                    b, i = _parse_body(lines, i + 1, ind, lines[i][0])
                    branches.append(b)
                if len(branches) < 2:
                    raise ConfigError(f"line {lineno}: 'either:' needs at least one 'or:' block after it")
                items.append(Alt(branches))
        elif text.endswith(":"):
            raise ConfigError(f"line {lineno}: unknown block {text!r}: blocks are 'any order:', "
                              "'either:' and 'or:'")
        else:
            items.append(parse_line(text, lineno))
            i += 1
    return Seq(items), i


def _parse_body(lines, i, header_indent, lineno):
    if i >= len(lines) or lines[i][1] <= header_indent:
        raise ConfigError(f"line {lineno}: the block is empty: indent its lines below the header")
    return _parse_block(lines, i, lines[i][1])


class Expectation:
    """A parsed script; :meth:`check` matches it against a :class:`~tcplab.Connection`."""

    def __init__(self, root: Seq, text: str):
        self.root = root
        self.text = text

    @classmethod
    def parse(cls, text: str) -> "Expectation":
        lines = []
        for n, raw in enumerate(text.expandtabs(4).splitlines(), 1):
            body = raw.split("#", 1)[0].rstrip()
            if body.strip():
                lines.append((n, len(body) - len(body.lstrip()), body.strip()))
        if not lines:
            raise ConfigError("the expected exchange is empty: give at least one segment line")
        # Indentation matters only under a block header: at the top level every line belongs to
        # the flat list, however it is indented (scripts concatenated from differently indented
        # pieces, e.g. HANDSHAKE + "> P. 1:6(5) ack 1").
        try:
            root, _ = _parse_block(lines, 0, 0)
        except ConfigError as exc:
            m = re.match(r"line (\d+): (.*)", str(exc), re.S)
            if not m:
                raise
            n = int(m[1])
            src = text.expandtabs(4).splitlines()[n - 1].strip()
            raise ConfigError(f"expected exchange, line {n} {src!r}: {m[2]}") from None
        return cls(root, text)

    # -- matching ----------------------------------------------------------------------
    def match(self, seen: list[Seen], complete: bool = True) -> "Failure | None":
        """Where ``seen`` departs from this exchange (None: it matches).  ``complete``: every
        observed segment must be accounted for, not only a prefix."""
        probe = _Probe(seen)
        for end in probe.walk(self.root, 0):
            if not complete or end == len(seen):
                return None
            probe.note(end, None)  # the script is done but segments remain
        return probe.failure()


@dataclass
class Failure:
    """Where an observed exchange departs from the expected one."""
    index: int                 # the segment where matching got stuck (== total: ran out)
    spec: Spec | None          # the closest expected line there (None: an extra segment)
    diffs: list                # (field, expected, actual)
    total: int = 0             # how many segments the connection has

    def marks(self) -> tuple[dict[int, str], str | None]:
        """Where the failure shows on a ladder: notes by segment index, and a note after the
        last segment when an expected one is missing."""
        if self.spec is None:
            return {self.index: "unexpected"}, None
        if self.index >= self.total:
            return {}, f"expected {self.spec.render()}"
        return {self.index: f"expected {self.spec.render()}"}, None


@dataclass
class Mismatch:
    """The typed record of a failed expectation, carried by :class:`tcplab.ExpectationFailed`:
    the connection observed, the script it was held to, and where they part.  Reports draw
    their ladders from it."""
    conn: Any                  # the tcplab.Connection
    script: str
    failure: Failure

    @property
    def notes(self) -> dict[int, str]:
        return self.failure.marks()[0]

    @property
    def missing(self) -> str | None:
        return self.failure.marks()[1]


class _Probe:
    """Backtracking matcher that remembers the furthest point any attempt reached."""

    def __init__(self, seen: list[Seen]):
        self.segs = seen
        self.best = -1
        self.cands: list[Spec | None] = []

    def note(self, i: int, spec: Spec | None) -> None:
        if i > self.best:
            self.best, self.cands = i, []
        if i == self.best and spec not in self.cands:
            self.cands.append(spec)

    def ok(self, spec: Spec, i: int) -> bool:
        if i < len(self.segs) and not spec.differences(self.segs[i]):
            return True
        self.note(i, spec)
        return False

    def walk(self, node: Node, i: int) -> Iterator[int]:
        if isinstance(node, Spec):
            n, j = 0, i
            ends = []
            if node.lo == 0:
                ends.append(i)
            while n < node.hi and self.ok(node, j):
                n, j = n + 1, j + 1
                if n >= node.lo:
                    ends.append(j)
            yield from reversed(ends)  # greedy: most copies first
        elif isinstance(node, Seq):
            yield from self._seq(node.items, 0, i)
        elif isinstance(node, Alt):
            for b in node.branches:
                yield from self.walk(b, i)
        elif isinstance(node, AnyOrder):
            yield from self._any(node.specs, [0] * len(node.specs), i)

    def _seq(self, items: list, k: int, i: int) -> Iterator[int]:
        if k == len(items):
            yield i
            return
        for j in self.walk(items[k], i):
            yield from self._seq(items, k + 1, j)

    def _any(self, specs: list[Spec], counts: list[int], i: int) -> Iterator[int]:
        took = False
        for n, sp in enumerate(specs):
            if counts[n] < sp.hi and self.ok(sp, i):
                took = True
                counts[n] += 1
                yield from self._any(specs, counts, i + 1)
                counts[n] -= 1
        if all(c >= sp.lo for c, sp in zip(counts, specs)):
            yield i
        elif not took:
            for c, sp in zip(counts, specs):
                if c < sp.lo:
                    self.note(i, sp)

    def failure(self) -> Failure:
        i = self.best
        if i < len(self.segs):
            real = [c for c in self.cands if c is not None]
            if not real:
                return Failure(i, None, [], len(self.segs))
            spec = min(real, key=lambda s: len(s.differences(self.segs[i])))
            return Failure(i, spec, spec.differences(self.segs[i]), len(self.segs))
        spec = next((c for c in self.cands if c is not None), None)
        return Failure(i, spec, [], len(self.segs))
