"""The segment notation and packetdrill's script language, read with one grammar (script.lark).

A lab's expected exchange (:mod:`tcplab.observe.expect`) is made of segment lines; a packetdrill
script (:mod:`tcplab.lab.pkt`) of events whose packets are the same segment lines.  Both are read
here with Lark (LALR, contextual lexer): :func:`parse_segment` for one line of a lab,
:func:`parse_script` for a whole script.  Errors name the line and column and what was expected.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .notation import MOD, flags_from_letters

GRAMMAR = Path(__file__).with_name("script.lark")


@functools.lru_cache(maxsize=None)
def _parser(start: str):
    from lark import Lark
    return Lark(GRAMMAR.read_text(), start=start, parser="lalr", lexer="contextual", propagate_positions=True,
                maybe_placeholders=False)


# -- what is read ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    """One TCP option as written: ``kind`` (nop, eol, mss, wscale, sackOK, sack, TS, or another
    name), its value (None where left out: any value), and its raw words for others."""
    kind: str
    value: Any = None


@dataclass(frozen=True)
class SegmentLine:
    """One segment as written, every field after the flags optional (None: not written)."""
    direction: str                     # ">" sent by the host under test (the client in a lab), "<" received
    flags: frozenset                   # flag names: SYN, ACK, FIN, RST, PSH, URG, ECE, CWR
    letters: str                       # as written
    seq: int | None = None
    end: int | None = None
    length: int | None = None
    ack: int | None = None
    win: int | None = None
    urg: int | None = None
    options: tuple | None = None       # of Option; None: not written (a script: none)
    any_options: bool = False          # <...>
    ip: tuple = ()                     # [ect0], (tos 0x10), ...: (word, value)
    repeat: str | None = None          # + * ? {n} {n,m} (labs only)
    line: int = 0


@dataclass(frozen=True)
class Time:
    """An event's time: ``kind`` absolute, relative (``+``), or any (``*``); ``start`` seconds;
    ``end`` for a range (``a~b``) or a blocking call's return (``a...b``)."""
    kind: str                          # "abs", "rel", "any"
    start: float = 0.0
    end: float | None = None
    range: bool = False                # a~b: the event may happen anywhere in it
    blocking: bool = False             # a...b: a system call that returns at b


@dataclass
class Syscall:
    name: str
    args: list
    result: int
    errno: str | None = None
    note: str | None = None


@dataclass
class Event:
    line: int
    time: Time
    kind: str                          # packet, syscall, command, code, other_packet
    packet: SegmentLine | None = None
    syscall: Syscall | None = None
    text: str = ""                     # command line, code, or the unsupported packet's text
    source: str = ""                   # the script's own line


@dataclass
class Script:
    path: Path | None
    options: dict = field(default_factory=dict)      # --name=value lines
    init_commands: list = field(default_factory=list)
    events: list = field(default_factory=list)
    cleanup_command: str | None = None
    text: str = ""

    def line(self, n: int) -> str:
        lines = self.text.splitlines()
        return lines[n - 1].strip() if 0 < n <= len(lines) else ""


# Values in system call arguments: Python values, plus these markers
class Ellipsis_:
    def __repr__(self) -> str:
        return "..."


ELLIPSIS = Ellipsis_()


@dataclass(frozen=True)
class Symbol:
    name: str


@dataclass(frozen=True)
class BitOr:
    parts: tuple


@dataclass(frozen=True)
class Field:
    name: str
    value: Any
    count: Any = None                  # msg_iov(1)=...: the (1)


class Null:
    def __repr__(self) -> str:
        return "NULL"


NULL = Null()


# -- building the values ---------------------------------------------------------------------------

def _tree_to_segment(tree, repeat=None) -> SegmentLine:
    kw: dict = {"options": None}
    direction = letters = None
    flags = frozenset()
    for child in tree.children:
        if getattr(child, "type", None) == "DIRECTION":
            direction = str(child)
            continue
        name = child.data
        if name == "flags":
            letters = str(child.children[0])
            if any(c.isdigit() for c in letters) or "A" in letters:
                raise _Refused(tree.meta.line, "AccECN (the ACE field, the AE flag) is not supported")
            flags = flags_from_letters(letters)
        elif name == "no_flags":
            letters, flags = "-", frozenset()
        elif name == "seq":
            a, rest = str(child.children[0]).split(":")
            e, n = rest.rstrip(")").split("(")
            kw.update(seq=int(a), end=int(e), length=int(n))
        elif name in ("ack", "win", "urg"):
            kw[name] = int(child.children[0])
        elif name == "ip_info":
            kw["ip"] = tuple((str(i.children[0]), str(i.children[1]) if len(i.children) > 1 else None)
                             for i in child.children)
        elif name == "any_options":
            kw["any_options"] = True
        elif name == "tcp_options":
            kw["options"] = tuple(_option(o, tree.meta.line) for o in child.children)
    return SegmentLine(direction=direction, flags=flags, letters=letters, repeat=repeat,
                       line=tree.meta.line if hasattr(tree.meta, "line") else 0, **kw)


class _Refused(Exception):
    def __init__(self, line: int, what: str):
        super().__init__(what)
        self.line, self.what = line, what


def _option(o, line: int) -> Option:
    kids = [str(c) for c in o.children]
    kind = o.data[4:]                  # opt_mss -> mss
    if kind == "nop" or kind == "eol" or kind == "sackok":
        return Option("sackOK" if kind == "sackok" else kind)
    if kind in ("mss", "wscale"):
        return Option(kind, int(kids[0]) if kids else None)
    if kind == "ts":
        return Option("TS", (int(kids[0]), int(kids[1])) if kids else None)
    if kind == "sack":
        return Option("sack", tuple(tuple(int(x) for x in b.children[0].split(":")) for b in o.children))
    if kids[0] in ("FO", "FOEXP"):          # Fast Open: its cookie as written (hex, a -D name, or none)
        return Option(kids[0], "".join(kids[1:]))
    return Option(kids[0], tuple(kids[1:]))


def _value(node):
    from lark import Token, Tree
    if isinstance(node, Token):
        return str(node)
    assert isinstance(node, Tree)
    d, kids = node.data, node.children
    if d == "int":
        return int(str(kids[0]), 0)
    if d == "negative":
        return -int(str(kids[0]))
    if d == "ellipsis":
        return ELLIPSIS
    if d == "null":
        return NULL
    if d == "string":
        return bytes(str(kids[0])[1:-1], "utf-8").decode("unicode_escape")
    if d == "symbol":
        return Symbol(str(kids[0]))
    if d == "bitor":
        return BitOr(tuple(_value(k) for k in kids))
    if d == "array":
        return [_value(k) for k in kids]
    if d == "struct":
        return {"__struct__": [_value(k) for k in kids]}
    if d == "field":
        return Field(str(kids[0]), _value(kids[1]))
    if d == "named_field":
        return Field(str(kids[0]), _value(kids[-1]), [_value(k) for k in kids[1:-1]])
    raise ValueError(f"unknown value node {d}")


def _time(node) -> Time:
    d = node.data
    nums = [str(k) for k in node.children]
    if d == "any_time":
        return Time("any")
    if d in ("rel_range", "abs_range"):
        return Time("rel" if d == "rel_range" else "abs", float(nums[0].lstrip("+")), float(nums[1].lstrip("+")),
                    range=True)
    start = float(nums[0].lstrip("+"))
    end = float(nums[1]) if len(nums) > 1 else None
    return Time("rel" if d == "rel_time" else "abs", start, end, blocking=end is not None)


# -- entry points ---------------------------------------------------------------------------------

def parse_segment(text: str, lineno: int = 0) -> SegmentLine:
    """One segment line of a lab (``< S. 0:0(0) ack 1 +``); ConfigError naming the line."""
    from lark.exceptions import LarkError, UnexpectedInput
    try:
        tree = _parser("segment").parse(text)
    except UnexpectedInput as exc:
        raise ConfigError(f"line {lineno}: cannot read {text!r} at column {exc.column}: write '> FLAGS "
                          "[seq:end(len)] [ack N] [win N] [<options>] [+|*|?|{n}|{n,m}]', e.g. "
                          "'< S. 0:0(0) ack 1'") from None
    except (LarkError, ValueError) as exc:
        raise ConfigError(f"line {lineno}: {exc}") from None
    body, *rest = tree.children
    repeat = str(rest[0].children[0]) if rest else None
    try:
        seg = _tree_to_segment(body, repeat)
    except _Refused as exc:
        raise ConfigError(f"line {lineno}: {exc.what}") from None
    except ValueError as exc:
        raise ConfigError(f"line {lineno}: {exc}") from None
    _check_segment(seg, lineno)
    return seg


def _check_segment(seg: SegmentLine, lineno: int) -> None:
    if seg.seq is not None and (seg.seq + seg.length) % MOD != seg.end:
        raise ConfigError(f"line {lineno}: {seg.seq}:{seg.end}({seg.length}) is inconsistent: end must be "
                          f"seq + len = {(seg.seq + seg.length) % MOD}")
    if seg.ack is not None and "ACK" not in seg.flags:
        raise ConfigError(f"line {lineno}: 'ack {seg.ack}' given but the flags {seg.letters!r} have no ACK: "
                          "add '.' (e.g. 'S.')")


#: bytes of each TCP option on the wire (sack: 2 + 8 per block)
_OPTION_BYTES = {"nop": 1, "eol": 1, "mss": 4, "wscale": 3, "sackOK": 2, "TS": 10}


def _unpadded(seg: SegmentLine) -> int:
    """packetdrill's check of a script's segment (tcp_packet.c): its options' bytes beyond a
    multiple of 4 (0 where it cannot tell: an option tcplab refuses anyway)."""
    total = 0
    for o in seg.options or ():
        if o.kind == "sack":
            total += 2 + 8 * len(o.value or ())
        elif o.kind in _OPTION_BYTES:
            total += _OPTION_BYTES[o.kind]
        else:
            return 0
    return total & 3


def parse_script(text: str, path: Path | None = None) -> Script:
    """A packetdrill script.  A ConfigError names the line, the column and what was expected."""
    try:
        return _parse_script(text, path)
    except RecursionError:          # [[[[...]]]] thousands deep: a hostile text, not a script
        raise ConfigError(f"{path.name if path else 'script'}: cannot read it: its brackets or braces are "
                          "nested thousands deep") from None


def _parse_script(text: str, path: Path | None) -> Script:
    from lark.exceptions import UnexpectedInput
    name = path.name if path else "script"
    try:
        tree = _parser("script").parse(text)
    except UnexpectedInput as exc:
        src = text.splitlines()[exc.line - 1].strip() if 0 < exc.line <= len(text.splitlines()) else ""
        raise ConfigError(f"{name}:{exc.line}: cannot read {src!r} at column {exc.column}") from None
    script = Script(path=path, text=text)
    for node in tree.children:
        d = node.data
        if d == "config_line":
            opt = str(node.children[0])[2:]
            key, _, value = opt.partition("=")
            script.options[key] = value
        elif d == "init_command":
            script.init_commands.append(str(node.children[0])[1:-1])
        elif d == "cleanup_command":
            script.cleanup_command = str(node.children[0])[1:-1]
        elif d == "event":
            time_node, action = node.children
            line = time_node.meta.line
            ev = Event(line=line, time=_time(time_node), kind=action.data, source=script.line(line))
            try:
                if action.data == "packet":
                    ev.packet = dataclasses.replace(_tree_to_segment(action.children[0]), line=line)
                    excess = _unpadded(ev.packet)
                    if excess:
                        raise ValueError(f"TCP options are not padded correctly to ensure TCP header is a "
                                         f"multiple of 4 bytes: {excess} excess bytes (add nop)")
                elif action.data == "other_packet":
                    ev.text = str(action.children[1])
                elif action.data == "command":
                    ev.text = str(action.children[0])[1:-1]
                elif action.data == "code":
                    ev.text = str(action.children[0])[2:-2]
                else:
                    sc = action.children[0]
                    kids = sc.children
                    call = str(kids[0])
                    rest = kids[1:]
                    errno = note = None
                    while rest and getattr(rest[-1], "type", None) in ("ERRNO", "PAREN"):
                        tok = rest.pop()
                        if tok.type == "ERRNO":
                            errno = str(tok)
                        else:
                            note = str(tok)[1:-1]
                    result = _value(rest.pop())
                    ev.kind = "syscall"
                    ev.syscall = Syscall(call, [_value(a) for a in rest], result, errno, note)
            except _Refused as exc:
                ev.kind, ev.text = "refused", exc.what
            except ValueError as exc:
                raise ConfigError(f"{name}:{line}: {exc}") from None
            script.events.append(ev)
    return script
