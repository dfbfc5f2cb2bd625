"""A scripted peer: run packetdrill scripts against the kernel under test, unmodified.

One end of the wire is the kernel, in a namespace of its own, driven by the script's system calls;
the other end is ``tun0`` (:mod:`tcplab.wire.tun`), which sends exactly the segments the script
injects (``<`` lines) and checks every segment the kernel sends (``>`` lines) against the script,
in packetdrill's semantics (google/packetdrill, run.c and run_packet.c):

* times: absolute, ``+relative`` (to when the previous event ended, or to the previous injected
  segment's time between two injected ones), ``*``, ranges ``a~b``, and blocking calls
  ``+0...0.1 call()`` run in a thread of their own and checked when they return; tolerance 4 ms
  or 12.5 % of the time since the previous event, whichever is larger (``--tolerance_usecs``);
* sequence numbers relative to each side's ISN: the script picks the peer's; the kernel's is
  learned from its SYN or SYN-ACK; TS ecr of injected segments is mapped to the TS val the kernel
  really sent; an outbound segment's TS val is not checked (packetdrill's default), its other
  options byte for byte and in order, ``<...>`` not at all; its window only where written;
* system calls through libc (ctypes) with packetdrill's argument notation, results and errno names;
  ``%{ }%`` Python over the socket's ``tcpi_*`` and ``SK_MEMINFO_*``; backtick lines run by the
  shell in the kernel's namespace, in the script's folder, with ``-D`` definitions in the
  environment and PACKETDRILL_PID set.

What is not supported is refused before anything runs, by line and name; nothing is ever
passed that was not checked.  The namespace, its sysctls and its device die with the run, and
what the script's helpers write in /tmp under this process's id (``/tmp/sysctl_restore_PID.sh``)
is removed.
"""
from __future__ import annotations

import ctypes
import errno as errno_mod
import os
import socket
import struct
import subprocess
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, TcplabError
from ..notation import letters
from ..script import ELLIPSIS, NULL, Event, Field, Script, SegmentLine, Symbol, parse_script
from .pkt_names import ERRNO_NAMES, IP_MARKS, SYMBOLS, _int, refusals, socket_state
from ..wire.netns import Namespace
from ..wire.tun import Frame, Tun, prefix_of

_libc = ctypes.CDLL(None, use_errno=True)
MOD = 1 << 32

#: packetdrill's defaults and the kernel's ksft_runner.sh arguments
DEFAULTS = {
    4: dict(local_ip="192.168.0.1", gateway_ip="192.168.0.1", netmask_ip="255.255.0.0", remote_ip="192.0.2.1",
            mtu=1500),
    6: dict(local_ip="fd3d:a0b:17d6::1", gateway_ip="fd3d:a0b:17d6:8888::1", netmask_ip="", remote_ip="fd3d:fa7b:d17d::1",
            mtu=1520),
}


#: the timing tolerance of labs (their scripts and ScriptedPeer): a lab runs beside others on a
#: busy machine (the catalogue's 8 workers on 2 cores delayed the peer's own injections by up to
#: 35 ms), and its claims are about which segment comes, not about milliseconds; the kernel's
#: suite keeps packetdrill's 4 ms
LAB_TOLERANCE_USECS = 50_000


def lab_tolerance_usecs() -> int:
    """LAB_TOLERANCE_USECS, stretched where the CPU is emulated (TCPLAB_TIME_SCALE, set in tcplab's VM)."""
    return int(LAB_TOLERANCE_USECS * float(os.environ.get("TCPLAB_TIME_SCALE") or 1))


@dataclass
class Config:
    """How a script runs (packetdrill's command-line flags; a script's own ``--flag`` lines win)."""
    ip_version: int = 4
    local_ip: str = ""
    gateway_ip: str = ""
    netmask_ip: str = ""
    remote_ip: str = ""
    mtu: int = 0
    defines: dict = field(default_factory=dict)
    tolerance_usecs: int = 4000
    tolerance_percent: float = 12.5
    mss: int = 0
    tcp_ts_tick_usecs: int = 0
    bind_port: int = 8080
    connect_port: int = 8080
    timeout: float = 120.0            # a whole run, at most
    record_tail: float = 0.5          # record mode: how long the kernel's segments are recorded after the last line

    def filled(self) -> "Config":
        d = DEFAULTS[self.ip_version]
        for k, v in d.items():
            if not getattr(self, k):
                setattr(self, k, v)
        import ipaddress
        for k in ("local_ip", "gateway_ip", "remote_ip"):     # as the kernel prints them back
            setattr(self, k, str(ipaddress.ip_address(getattr(self, k))))
        return self


def _opening(flags) -> bool:
    """A SYN that opens a connection (no ACK; ECE and CWR may ride on it: an ECN setup SYN)."""
    return "SYN" in flags and "ACK" not in flags


class Refused(TcplabError):
    """The script uses something tcplab does not run: nothing ran."""

    def __init__(self, line: int, what: str):
        super().__init__(f"line {line}: {what}")
        self.line, self.what = line, what


class Failed(TcplabError, AssertionError):
    """The kernel did not do what the script says, at ``line`` (an AssertionError: in a lab, a
    failure, not an error)."""

    def __init__(self, line: int, source: str, what: str, expected: str = "", actual: str = ""):
        text = f"line {line}: {what}\n  script:   {source}"
        if expected or actual:
            text += f"\n  expected: {expected}\n  actual:   {actual}"
        super().__init__(text)
        self.line, self.source, self.what, self.expected, self.actual = line, source, what, expected, actual


@dataclass
class Outcome:
    """One run of one script in one IP version."""
    path: Path
    ip_version: int
    status: str                        # pass, fail, refused
    seconds: float
    message: str = ""
    line: int = 0
    exchange: list = field(default_factory=list)     # (time, direction, frame, line, seq, ack): script numbers

    @property
    def passed(self) -> bool:
        return self.status == "pass"


# -- the socket under test ----------------------------------------------------------------------

@dataclass
class Peer:
    """What the peer knows of the connection: the script's and the kernel's ISNs, the live 4-tuple,
    the TS vals it saw (script value -> the kernel's)."""
    local_port: int | None = None
    remote_port: int | None = None
    script_local_isn: int | None = None
    live_local_isn: int | None = None
    remote_isn: int = 0
    ts_vals: dict = field(default_factory=dict)
    first_ts: tuple | None = None          # (script val, actual val)


def render(frame: Frame, seg_seq: int | None = None, seg_ack: int | None = None, *, opts: bool = True) -> str:
    """A frame in the script's notation (numbers as given)."""
    fl = letters(frame.flags).replace("none", "-")
    seq = frame.seq if seg_seq is None else seg_seq
    text = f"{fl} {seq}:{(seq + frame.length) % MOD}({frame.length})"
    if "ACK" in frame.flags:
        text += f" ack {frame.ack if seg_ack is None else seg_ack}"
    text += f" win {frame.win}"
    if opts and frame.options:
        text += f" <{_options_text(frame.options)}>"
    return text


def _options_text(options) -> str:
    """(kind, value) options in the script's notation; a value None is written as the bare name."""
    parts = []
    for k, v in options:
        if k == "TS":
            parts.append(f"TS val {v[0]} ecr {v[1]}" if v else "TS")
        elif k == "sack":
            parts.append("sack " + " ".join(f"{a}:{b}" for a, b in v))
        elif k in ("FO", "FOEXP"):
            parts.append(f"{k} {v.hex() if isinstance(v, bytes) else v}".rstrip())
        elif v is None:
            parts.append(k)
        else:
            parts.append(f"{k} {v}")
    return ",".join(parts)


def render_line(p: SegmentLine) -> str:
    text = f"{p.direction} {p.letters}"
    if p.seq is not None:
        text += f" {p.seq}:{p.end}({p.length})"
    if p.ack is not None:
        text += f" ack {p.ack}"
    if p.win is not None:
        text += f" win {p.win}"
    if p.any_options:
        text += " <...>"
    elif p.options:
        text += f" <{_options_text((o.kind, o.value) for o in p.options)}>"
    return text


class Run:
    """One script, one IP version, start to end."""

    def __init__(self, script: Script, config: Config, *, record: bool = False, results_of: frozenset = frozenset()):
        self.script, self.cfg = script, config
        # record mode (grading a prediction, tcplab.grading.script_prediction): the script has no ``>`` lines;
        # every segment the kernel sends is recorded, not checked, with the given line it follows,
        # and the results of the system calls on the lines ``results_of`` are recorded, not checked
        self.record, self.results_of = record, results_of
        self.started: dict[int, float] = {}    # record mode: a given line -> when it ran (run time)
        self.results: dict[int, tuple[int, str]] = {}   # record mode: line -> (result, errno name or "")
        self.fds: dict[int, int] = {}          # script fd -> live fd
        self.peer = Peer()
        self.connecting: int | None = None     # live fd of a connect() whose SYN has not been seen
        self.listening = False                 # a listen() since the last connection began: a SYN opens one
        self.under_test: int | None = None     # live fd the %{ }% blocks read
        self.exchange: list = []
        self.sent_buffers: list = []           # alive for the whole run (zero-copy sends)
        self.blocking: threading.Thread | None = None
        self.blocking_error: BaseException | None = None
        self.ns: Namespace | None = None
        self.tun: Tun | None = None
        self.start = 0.0
        self.last: tuple[Event, float] | None = None   # the previous event and its script time
        self._stop = threading.Event()
        self.next_port = 40000 + os.getpid() % 20000
        # nstat keeps its history in a file (by default /tmp/.nstat.uUID, shared by every run of
        # the machine): each run has its own, removed with it
        import tempfile
        self.nstat_history = Path(tempfile.gettempdir()) / f"tcplab-pkt-nstat-{os.getpid()}-{id(self)}"

    # -- the run -------------------------------------------------------------------------------
    def open(self) -> None:
        """The kernel's namespace and the peer's tun0, then the script's init commands; the run's
        clock starts here."""
        self.family = socket.AF_INET if self.cfg.ip_version == 4 else socket.AF_INET6
        self.ns = Namespace("pkt")
        prefix = prefix_of(self.cfg.netmask_ip) if self.cfg.ip_version == 4 else 48
        self.tun = Tun(self.ns, family=self.cfg.ip_version, local_ip=self.cfg.local_ip, prefixlen=prefix,
                       remote_ip=self.cfg.remote_ip, mtu=self.cfg.mtu)
        for cmd in self.script.init_commands:
            r = self._shell(cmd)
            if r.returncode != 0:
                raise Failed(0, f"`{cmd.strip()}`", f"error executing init command: non-zero status "
                             f"{r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}")
        self.start = time.time()

    def execute(self) -> None:
        try:
            self.open()
            for ev in self.script.events:
                if self._now() > self.cfg.timeout:
                    raise Failed(ev.line, ev.source, f"the run took longer than {self.cfg.timeout:g} s")
                self._event(ev)
            self._await_blocking(final=True)
            if self.record:        # what the kernel still sends after the last line, for a while
                self._drain(self.cfg.record_tail)
            if self.script.cleanup_command:
                r = self._shell(self.script.cleanup_command)
                if r.returncode != 0:
                    raise Failed(0, f"`{self.script.cleanup_command.strip()}`",
                                 f"error executing cleanup command: non-zero status {r.returncode}")
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        for fd in set(self.fds.values()) | ({self.connecting} - {None}):
            _libc.shutdown(fd, 2)          # wakes a call still blocked on it (close() would not)
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds.clear()
        if self.blocking is not None:
            self.blocking.join(2)
        if self.tun is not None:
            self.tun.close()
        if self.ns is not None:
            self.ns.close()
        # the kernel's helper set_sysctls.py writes its restore script under PACKETDRILL_PID
        import contextlib
        with contextlib.suppress(OSError):         # a read-only /tmp (tcplab's VM) holds none
            for leftover in Path("/tmp").glob(f"sysctl_restore_{os.getpid()}.sh"):
                leftover.unlink()
            self.nstat_history.unlink(missing_ok=True)

    def _shell(self, cmd: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PACKETDRILL_PID": str(os.getpid()), "NSTAT_HISTORY": str(self.nstat_history),
               "PATH": os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin",
               **{k: str(v) for k, v in self.cfg.defines.items()}}
        cwd = self.script.path.parent if self.script.path else None
        return self.ns.run(subprocess.run, ["/bin/sh", "-c", cmd], cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=60)

    # -- time ----------------------------------------------------------------------------------
    # The run's clock is the realtime clock, the one the kernel stamps the sniffed frames with.
    def _now(self) -> float:
        return time.time() - self.start

    def _resolve(self, ev: Event) -> tuple[float, float | None]:
        """The event's script time and end (range end or a blocking call's return), as
        packetdrill's adjust_relative_event_times makes them."""
        t = ev.time
        if t.kind == "abs":
            return t.start, t.end
        inbound = ev.kind == "packet" and ev.packet.direction == "<"
        last = self.last
        if last and inbound and last[0].kind == "packet" and last[0].packet.direction == "<":
            offset = last[1]
        else:
            offset = self._now()
        if t.kind == "any":
            return offset, None
        return t.start + offset, (t.end + offset) if t.end is not None else None

    def _tolerance(self, at: float) -> float:
        tol = self.cfg.tolerance_usecs / 1e6
        if self.last is not None:
            tol = max(tol, self.cfg.tolerance_percent / 100 * (at - self.last[1]))
        return tol

    def _check_time(self, ev: Event, what: str, expected: float, end: float | None, actual: float,
                    tol: float | None = None) -> None:
        if ev.time.kind == "any":
            return
        tol = self._tolerance(expected) if tol is None else tol
        hi = end if (end is not None and ev.time.range) else expected
        if not (expected - tol <= actual <= hi + tol):
            want = f"{expected:.6f}~{hi:.6f} s" if hi != expected else f"{expected:.6f} s"
            raise Failed(ev.line, ev.source, f"timing error: expected {what} at {want} but happened at "
                         f"{actual:.6f} s; tolerance {tol:.6f} s")

    def _wait_until(self, at: float) -> None:
        delay = at - self._now()
        if delay > 0:
            self._stop.wait(delay)     # the script's own timer: this instant is what it asks for

    # -- events --------------------------------------------------------------------------------
    def _event(self, ev: Event) -> None:
        at, end = self._resolve(ev)
        if ev.kind == "packet" and ev.packet.direction == ">":
            if self.record:
                raise Refused(ev.line, "a recorded script has no > lines: what the kernel sends is recorded")
            self._outbound(ev, at, end)
        else:
            self._wait_until(at)
            if self.record:
                self._drain(0.0)
                self.started[ev.line] = self._now()
            if ev.kind == "packet":
                self._inbound(ev, at)
            elif ev.kind == "syscall":
                self._syscall(ev, at, end)
            elif ev.kind == "command":
                r = self._shell(ev.text)
                if r.returncode != 0:
                    raise Failed(ev.line, ev.source, f"non-zero status {r.returncode} from the command"
                                 + (f": {(r.stderr or r.stdout).strip()[-300:]}" if (r.stderr or r.stdout).strip()
                                    else ""))
            elif ev.kind == "code":
                self._code(ev)
        self.last = (ev, at)

    def _code(self, ev: Event) -> None:
        fd = self.under_test
        if fd is None:
            raise Failed(ev.line, ev.source, "a %{ }% block needs a socket under test (connected or accepted)")
        names = socket_state(fd)
        try:
            code = textwrap.dedent(ev.text.replace("\\\n", " ")).strip()
            exec(compile(code, f"line {ev.line}", "exec"), {"__builtins__": __builtins__, **names})
        except AssertionError as exc:
            raise Failed(ev.line, ev.source, f"assertion failed: {exc}" if str(exc) else "assertion failed")
        except Exception as exc:
            raise Failed(ev.line, ev.source, f"the Python block raised {type(exc).__name__}: {exc}")

    # -- packets -------------------------------------------------------------------------------
    # packetdrill's numbering (socket.h): a SYN's numbers are as written; every other segment's
    # count from the ISN of the side that sends them (tcpdump's relative numbers), the peer's ISN
    # being the one its SYN (or SYN-ACK) was written with.
    def _local_offset(self, syn: bool) -> int:
        p = self.peer
        live, script = p.live_local_isn or 0, p.script_local_isn or 0
        return (live - script) % MOD if syn else live

    def _remote_offset(self, syn: bool) -> int:
        return 0 if syn else self.peer.remote_isn

    def _inbound(self, ev: Event, at: float) -> None:
        p = ev.packet
        if p.seq is None:
            raise Failed(ev.line, ev.source, "an injected segment needs seq:end(len)")
        if p.win is None:
            raise Failed(ev.line, ev.source, "an injected segment needs its window: win N")
        peer = self.peer
        if _opening(p.flags) and self.listening:   # a new connection to the listener (packetdrill's rule)
            self.listening = False
            peer.remote_isn = p.seq
            peer.remote_port = self.next_port
            self.next_port += 1
            peer.local_port = self.cfg.bind_port
            peer.script_local_isn = peer.live_local_isn = None
            peer.ts_vals, peer.first_ts = {}, None
        if peer.remote_port is None:
            raise Failed(ev.line, ev.source, "a segment injected before any connection (no SYN, no connect())")
        if self.record and "ACK" in p.flags and peer.live_local_isn is None:
            self._drain(2.0, until_isn=True)   # its ack counts from the kernel's ISN: wait for its SYN
        syn = "SYN" in p.flags
        if syn and "ACK" in p.flags:           # the peer's SYN-ACK to our connect(): its ISN
            peer.remote_isn = p.seq
        off = self._local_offset(syn)
        seq = (p.seq + self._remote_offset(syn)) % MOD
        ack = (p.ack + off) % MOD if (p.ack is not None and "ACK" in p.flags) else 0
        options = []
        for o in p.options or ():
            if o.kind == "TS":
                val, ecr = o.value
                if "ACK" in p.flags:
                    if ecr in peer.ts_vals:
                        ecr = peer.ts_vals[ecr]
                    else:
                        raise Failed(ev.line, ev.source, f"unable to infer live TS ecr for script TS ecr {ecr}; "
                                     "no matching or preceding outbound TS val")
                options.append(("TS", (val, ecr)))
            elif o.kind == "sack":
                options.append(("sack", tuple(((a + off) % MOD, (b + off) % MOD) for a, b in o.value)))
            elif o.kind in ("FO", "FOEXP"):
                options.append((o.kind, self._cookie(ev, o.value)))
            else:
                options.append((o.kind, o.value))
        tos = 0
        for word, value in p.ip:             # [ect0], [noecn], (tos 0x2): the IP header's ECN bits or TOS byte
            tos = _int(value) if word == "tos" else IP_MARKS.get(word, tos)
        frame = Frame(0.0, self.cfg.ip_version, self.cfg.remote_ip, self.cfg.local_ip, peer.remote_port,
                      peer.local_port, seq, ack, p.flags, p.win, p.urg or 0, options, b"\0" * p.length, tos=tos)
        frame.time = time.time()          # before the send: the kernel answers within it
        self.tun.send(frame, gso_mss=self.cfg.mss)
        self.exchange.append((frame.time - self.start, "<", frame, ev.line, p.seq, p.ack or 0))
        self._check_time(ev, "inbound packet", at, None, self._now())

    def _mine(self, f: Frame) -> bool:
        peer = self.peer
        if f.src != self.cfg.local_ip or f.dst != self.cfg.remote_ip:
            return False
        if self.connecting is not None and _opening(f.flags) and f.dport == self.cfg.connect_port:
            return True                        # the SYN of a connect(): its port is learned here
        return f.sport == peer.local_port and f.dport == peer.remote_port

    def _outbound(self, ev: Event, at: float, end: float | None) -> None:
        p = ev.packet
        deadline = self.start + max(at, end or at) + 2.0 if ev.time.kind != "any" else \
            time.time() + max(self.cfg.timeout - self._now(), 1)
        frame = self._sniff(ev, deadline)
        if p.length is not None and frame.length < p.length:
            frame = self._aggregate(ev, frame, p.length, deadline)
        seq, ack = self._learn(frame, p.seq if p.seq is not None else 0)
        actual = render(frame, seq, ack)
        self.exchange.append((frame.time - self.start, ">", frame, ev.line, seq, ack))
        diffs = [f"flags: expected {p.letters!r}"] if p.flags != frame.flags else []
        if p.seq is not None and seq != p.seq:
            diffs.append(f"seq: expected {p.seq}, actual {seq}")
        if p.seq is not None and frame.length != p.length:
            diffs.append(f"length: expected {p.length}, actual {frame.length}")
        want_ack = p.ack if p.ack is not None else 0
        if "ACK" in frame.flags and "ACK" in p.flags and ack != want_ack:
            diffs.append(f"ack: expected {want_ack}, actual {ack}")
        if p.win is not None and frame.win != p.win:
            diffs.append(f"win: expected {p.win}, actual {frame.win}")
        for word, value in p.ip:             # only where written, as packetdrill checks them
            if word == "ect01" and frame.tos & 3 not in (1, 2):
                diffs.append(f"ip_ecn: expected ect0 or ect1, actual {frame.tos & 3:#x}")
            elif word in IP_MARKS and frame.tos & 3 != IP_MARKS[word]:
                diffs.append(f"ip_ecn: expected {IP_MARKS[word]:#x} ({word}), actual {frame.tos & 3:#x}")
            elif word == "tos" and frame.tos != _int(value):
                diffs.append(f"tos: expected {_int(value):#x}, actual {frame.tos:#x}")
        if (p.urg or 0) != frame.urg:
            diffs.append(f"urg: expected {p.urg or 0}, actual {frame.urg}")
        if not p.any_options:
            diffs += self._options(ev, frame)
        if frame.payload.strip(b"\0"):
            diffs.append("the payload is not the bytes the script wrote")
        if diffs:
            raise Failed(ev.line, ev.source, "; ".join(diffs), render_line(p), f"> {actual}")
        self._check_time(ev, "outbound packet", at, end, frame.time - self.start)

    def _learn(self, frame: Frame, script_isn: int) -> tuple[int, int]:
        """What a segment of the kernel's teaches: its ISN (a SYN's seq, which is ``script_isn``
        in the script) and on connect() its port; returns its seq and ack in the script's numbers."""
        peer = self.peer
        syn = "SYN" in frame.flags
        if syn:
            if _opening(frame.flags) and self.connecting is not None:
                peer.local_port, peer.remote_port = frame.sport, frame.dport
                peer.remote_isn, peer.ts_vals, peer.first_ts = 0, {}, None
                self.under_test, self.connecting = self.connecting, None
            peer.live_local_isn = frame.seq
            peer.script_local_isn = script_isn
        return (frame.seq - self._local_offset(syn)) % MOD, (frame.ack - self._remote_offset(syn)) % MOD

    def _drain(self, seconds: float, *, until_isn: bool = False) -> None:
        """Record mode: every segment of the kernel's that arrived, and those arriving in the next
        ``seconds`` (or, ``until_isn``, until its first SYN is seen), each with the given line it
        follows (the last that began before the kernel sent it)."""
        deadline = time.time() + seconds
        while True:
            if until_isn and self.peer.live_local_isn is not None:
                return
            frame = self.tun.receive(max(0.0, deadline - time.time()))
            if frame is None:
                return
            if not self._mine(frame):
                continue
            seq, ack = self._learn(frame, 0)
            t = frame.time - self.start
            after = max((line for line, at in self.started.items() if at <= t), key=self.started.get, default=0)
            self.exchange.append((t, ">", frame, after, seq, ack))

    def _sniff(self, ev: Event, deadline: float) -> Frame:
        while True:
            frame = self.tun.receive(max(0.0, deadline - time.time()))
            if frame is None:
                raise Failed(ev.line, ev.source, "timed out waiting for the kernel's packet",
                             render_line(ev.packet), "(none within 2 s of its time)")
            if self._mine(frame):
                return frame

    def _aggregate(self, ev: Event, first: Frame, expected: int, deadline: float) -> Frame:
        """As packetdrill does: a script's segment larger than the kernel's is matched by the
        kernel's consecutive segments (TSO autosizing may cut a burst where the script did not),
        each the size of the one before but the last, contiguous, with the same headers."""
        frames, total = [first], first.length
        while total < expected:
            nxt = self._sniff(ev, deadline)
            prev = frames[-1]
            same = (nxt.seq == (prev.seq + prev.length) % MOD and nxt.ack == prev.ack and nxt.win == prev.win
                    and nxt.flags - {"FIN", "PSH", "CWR"} == prev.flags - {"FIN", "PSH", "CWR"})
            if not same or (nxt.length < expected - total and nxt.length != prev.length):
                raise Failed(ev.line, ev.source, f"the kernel's segment #{len(frames) + 1} does not continue the "
                             f"one before it ({total} of {expected} bytes so far)", render_line(ev.packet),
                             "> " + render((nxt)))
            frames.append(nxt)
            total += nxt.length
        last = frames[-1]
        return Frame(last.time, last.family, last.src, last.dst, last.sport, last.dport, first.seq, last.ack,
                     (last.flags - {"CWR"}) | (first.flags & {"CWR"}), last.win, last.urg, last.options,
                     b"".join(f.payload for f in frames), last.ttl, last.tos)

    def _options(self, ev: Event, frame: Frame) -> list[str]:
        p = ev.packet
        want = list(p.options or ())
        got = frame.options
        if [o.kind for o in want] != [k for k, _ in got]:
            return [f"options: expected <{','.join(o.kind for o in want)}>, actual <{','.join(k for k, _ in got)}>"]
        out = []
        for o, (k, v) in zip(want, got):
            if k == "TS":
                if o.value is not None:
                    script_val, live_val = o.value[0], v[0]
                    self.peer.ts_vals[script_val] = live_val
                    if self.peer.first_ts is None:
                        self.peer.first_ts = (script_val, live_val)
                    tick = self.cfg.tcp_ts_tick_usecs
                    if tick:
                        expected_live = self.peer.first_ts[1] + (script_val - self.peer.first_ts[0])
                        # packetdrill's tolerance here: 12.5 % of the time since the script began
                        tol = max(self.cfg.tolerance_usecs, self.cfg.tolerance_percent / 100 * self._now() * 1e6)
                        if abs(((live_val - expected_live + (1 << 31)) % MOD) - (1 << 31)) * tick > tol:
                            out.append(f"bad outbound TCP timestamp value {live_val} (script {script_val})")
            elif k in ("FO", "FOEXP"):
                cookie = self._cookie(ev, o.value) if o.value is not None else v
                if v != cookie:
                    out.append(f"{k}: expected cookie {cookie.hex() or '(none)'}, actual {v.hex() or '(none)'}")
            elif k == "sack":
                off = self._remote_offset(False)
                got_blocks = tuple(((a - off) % MOD, (b - off) % MOD) for a, b in v)
                if o.value != got_blocks:
                    out.append(f"sack: expected {o.value}, actual {got_blocks}")
            elif o.value is not None and v != o.value:
                out.append(f"{k}: expected {o.value}, actual {v}")
        return out

    def _cookie(self, ev: Event, text: str) -> bytes:
        """A Fast Open cookie as a script writes it: hex digits, or a -D name standing for them
        (packetdrill's lexer substitutes every defined word)."""
        text = str(self.cfg.defines.get(text, text))
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise Failed(ev.line, ev.source, f"the Fast Open cookie {text!r} is not an "
                         "even number of hex digits (or a -D name for them)") from None

    # -- system calls --------------------------------------------------------------------------
    def _syscall(self, ev: Event, at: float, end: float | None) -> None:
        if ev.time.blocking:
            self._await_blocking()
            self.blocking_error = None
            self.blocking_event = ev
            self.blocking = threading.Thread(target=self._blocking_call, args=(ev, at, end), daemon=True,
                                             name="tcplab-pkt-syscall")
            self.blocking.start()
            return
        self._await_blocking()
        self._check_time(ev, "system call start", at, None, self._now())
        self._call(ev)

    def _await_blocking(self, final: bool = False) -> None:
        t = self.blocking
        if t is None:
            return
        t.join(1.0)                        # packetdrill waits a second for the previous call
        if t.is_alive():
            if not final:
                return
            # packetdrill resets its connections at the end, which ends a call still blocked with
            # what it had done so far (a write's partial count): that result is then checked
            for fd in set(self.fds.values()):
                _libc.shutdown(fd, 2)
            t.join(2.0)
            if t.is_alive() or self.blocking_error is None:
                ev = self.blocking_event
                raise Failed(ev.line, ev.source, "runtime error: exiting while a blocking system call is in "
                             "progress")
        self.blocking = None
        if self.blocking_error is not None:
            err, self.blocking_error = self.blocking_error, None
            raise err

    def _blocking_call(self, ev: Event, at: float, end: float | None) -> None:
        try:
            self._call(ev)
            tol = self.cfg.tolerance_usecs / 1e6
            tol = max(tol, self.cfg.tolerance_percent / 100 * ((end or at) - at))
            self._check_time(ev, "system call return", end if end is not None else at, None, self._now(), tol)
        except BaseException as exc:
            self.blocking_error = exc

    def _live_fd(self, ev: Event, v) -> int:
        fd = _int(v)
        if fd not in self.fds:
            return -1 - fd if fd >= 0 else fd      # a script's bad fd stays bad (EBADF from the kernel)
        return self.fds[fd]

    def _sockaddr(self, ip: str, port: int):
        if self.family == socket.AF_INET:
            raw = struct.pack("=HH4s8x", socket.AF_INET, socket.htons(port), socket.inet_pton(socket.AF_INET, ip))
        else:
            raw = struct.pack("=HHI16sI", socket.AF_INET6, socket.htons(port), 0,
                              socket.inet_pton(socket.AF_INET6, ip), 0)
        return ctypes.create_string_buffer(raw, len(raw)), len(raw)

    def _buffer(self, v, length: int):
        if v is NULL:
            return None
        return ctypes.create_string_buffer(max(length, 1))

    def _call(self, ev: Event) -> None:
        sc = ev.syscall
        a = sc.args
        name = sc.name
        ctypes.set_errno(0)
        libc = _libc
        if name == "socket":
            domain = self.family if a[0] is ELLIPSIS else _int(a[0])
            r = self.ns.run(libc.socket, domain, _int(a[1]), _int(a[2]))
            err = ctypes.get_errno() if r < 0 else 0
            self._result(ev, r, err, fd_result=True)
            return
        fd = self._live_fd(ev, a[0]) if a else -1
        if name == "bind":
            addr, n = self._sockaddr(self.cfg.local_ip, self.cfg.bind_port)
            r = libc.bind(fd, addr, n)
        elif name == "listen":
            r = libc.listen(fd, _int(a[1]))
            self.listening = r == 0
        elif name == "accept":
            r = libc.accept(fd, None, None)
            if r >= 0:
                self.under_test = r
            self._result(ev, r, ctypes.get_errno() if r < 0 else 0, fd_result=True)
            return
        elif name == "connect" and isinstance(a[1], Symbol) and a[1].name == "AF_UNSPEC":
            raw = struct.pack("=H14x", socket.AF_UNSPEC)       # disconnect (tcp_disconnect)
            r = libc.connect(fd, ctypes.create_string_buffer(raw, len(raw)), len(raw))
        elif name == "connect":
            addr, n = self._sockaddr(self.cfg.remote_ip, self.cfg.connect_port)
            self.connecting = fd
            r = libc.connect(fd, addr, n)
        elif name in ("write", "read"):
            n = _int(a[2])
            buf = self._buffer(a[1], n)
            r = (libc.write if name == "write" else libc.read)(fd, buf, ctypes.c_size_t(n))
        elif name in ("send", "recv"):
            n = _int(a[2])
            buf = self._buffer(a[1], n)
            r = (libc.send if name == "send" else libc.recv)(fd, buf, ctypes.c_size_t(n), _int(a[3]))
        elif name in ("sendto", "recvfrom"):
            n = _int(a[2])
            buf = self._buffer(a[1], n)
            if name == "sendto" and _int(a[3]) & SYMBOLS["MSG_FASTOPEN"]:     # a connect with data
                addr, alen = self._sockaddr(self.cfg.remote_ip, self.cfg.connect_port)
                self.connecting = fd
                r = libc.sendto(fd, buf, ctypes.c_size_t(n), _int(a[3]), addr, alen)
            elif name == "sendto":
                r = libc.sendto(fd, buf, ctypes.c_size_t(n), _int(a[3]), None, 0)
            else:
                r = libc.recvfrom(fd, buf, ctypes.c_size_t(n), _int(a[3]), None, None)
        elif name in ("sendmsg", "writev", "readv"):
            r = self._msg(ev, fd)
        elif name == "close":
            r = libc.close(fd)
            if r == 0:
                self.fds.pop(_int(a[0]), None)
        elif name == "shutdown":
            r = libc.shutdown(fd, _int(a[1]))
        elif name == "setsockopt":
            value = a[3]
            if isinstance(value, list) and len(value) == 1:
                raw = struct.pack("=i", _int(value[0]))
            elif isinstance(value, dict):
                fields = {f.name: f.value for f in value["__struct__"] if isinstance(f, Field)}
                if "l_onoff" in fields:
                    raw = struct.pack("=ii", _int(fields["l_onoff"]), _int(fields["l_linger"]))
                else:
                    raise Refused(ev.line, f"setsockopt with {sorted(fields)} is not supported")
            elif isinstance(value, str):
                raw = value.encode("latin-1") + b"\0"      # "\xa1...": one byte per escape
            else:
                raise Refused(ev.line, f"setsockopt's value {value!r} is not supported")
            buf = ctypes.create_string_buffer(raw, len(raw))
            r = libc.setsockopt(fd, _int(a[1]), _int(a[2]), buf, ctypes.c_uint32(_int(a[4]) if a[4] is not
                                                                                      ELLIPSIS else len(raw)))
        elif name == "getsockopt":
            want = a[3]
            buf = ctypes.create_string_buffer(64)
            n = ctypes.c_uint32(4)
            r = libc.getsockopt(fd, _int(a[1]), _int(a[2]), buf, ctypes.byref(n))
            if r == 0 and isinstance(want, list) and len(want) == 1 and want[0] is not ELLIPSIS:
                got = struct.unpack_from("=i", buf.raw)[0]
                if got != _int(want[0]):
                    raise Failed(ev.line, ev.source, f"getsockopt's value: expected {_int(want[0])}, actual {got}")
        elif name == "fcntl":
            r = libc.fcntl(fd, _int(a[1]), *([ctypes.c_long(_int(a[2]))] if len(a) > 2 else []))
        elif name == "ioctl":
            val = ctypes.c_int(0)
            r = libc.ioctl(fd, ctypes.c_ulong(_int(a[1])), ctypes.byref(val))
            if r == 0 and isinstance(a[2], list) and a[2] and a[2][0] is not ELLIPSIS and val.value != _int(a[2][0]):
                raise Failed(ev.line, ev.source, f"ioctl's value: expected {_int(a[2][0])}, actual {val.value}")
        elif name == "poll":
            r = self._poll(ev)
        else:
            raise Refused(ev.line, f"the system call {name} is not supported")
        self._result(ev, r, ctypes.get_errno() if r < 0 else 0)

    def _msg(self, ev: Event, fd: int) -> int:
        sc = ev.syscall
        a = sc.args
        if sc.name in ("writev", "readv"):
            iovs, flags, msg_flags = a[1], 0, 0
        else:
            fields = {f.name: f for f in a[1]["__struct__"] if isinstance(f, Field)}
            iovs = fields["msg_iov"].value if "msg_iov" in fields else []
            msg_flags = _int(fields["msg_flags"].value) if "msg_flags" in fields else 0
            flags = _int(a[2])
        lengths = []
        for iov in iovs:
            items = iov["__struct__"] if isinstance(iov, dict) else iov
            length = items[-1]            # {iov_base, iov_len}: the length is what a script gives
            if isinstance(length, Field):
                length = length.value
            lengths.append(_int(length))

        class IOVec(ctypes.Structure):
            _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

        class MsgHdr(ctypes.Structure):
            _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(IOVec)),
                        ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                        ("flags", ctypes.c_int)]
        bufs = [ctypes.create_string_buffer(max(n, 1)) for n in lengths]
        self.sent_buffers.extend(bufs)     # MSG_ZEROCOPY: the kernel may read them after the call
        arr = (IOVec * max(len(lengths), 1))(*[IOVec(ctypes.cast(b, ctypes.c_void_p), n)
                                                for b, n in zip(bufs, lengths)])
        if sc.name == "writev":
            return _libc.writev(fd, arr, len(lengths))
        if sc.name == "readv":
            return _libc.readv(fd, arr, len(lengths))
        msg = MsgHdr(None, 0, arr if lengths else None, len(lengths), None, 0, msg_flags)
        return _libc.sendmsg(fd, ctypes.byref(msg), flags)

    def _poll(self, ev: Event) -> int:
        a = ev.syscall.args

        class PollFd(ctypes.Structure):
            _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]
        specs = []
        for item in a[0]:
            fields = {f.name: f.value for f in item["__struct__"] if isinstance(f, Field)}
            specs.append(fields)
        arr = (PollFd * len(specs))(*[PollFd(self._live_fd(ev, s["fd"]), _int(s["events"]), 0) for s in specs])
        r = _libc.poll(arr, len(specs), _int(a[2]))
        if r >= 0:
            for s, got in zip(specs, arr):
                if "revents" in s and got.revents != _int(s["revents"]):
                    raise Failed(ev.line, ev.source, f"poll's revents: expected {_int(s['revents'])}, "
                                 f"actual {got.revents}")
        return r

    def _result(self, ev: Event, r: int, err: int, *, fd_result: bool = False) -> None:
        sc = ev.syscall
        if ev.line in self.results_of:
            self.results[ev.line] = (r, ERRNO_NAMES.get(err, str(err)) if r < 0 else "")
            return
        want = sc.result
        if fd_result and want >= 0 and r >= 0:
            self.fds[want] = r
            return
        if r != want:
            got = f"{r}" + (f" {ERRNO_NAMES.get(err, err)} ({os.strerror(err)})" if r < 0 else "")
            exp = f"{want}" + (f" {sc.errno}" if sc.errno else "")
            raise Failed(ev.line, ev.source, f"{sc.name}() returned {got}, expected {exp}")
        if r < 0 and sc.errno and getattr(errno_mod, sc.errno, None) != err:
            raise Failed(ev.line, ev.source, f"{sc.name}() failed with {ERRNO_NAMES.get(err, err)} "
                         f"({os.strerror(err)}), expected {sc.errno}")


class ScriptedPeer:
    """The scripted peer from Python, one step at a time, in the script's own notation, for what a
    script alone cannot say::

        with ScriptedPeer(family=4) as peer:
            peer.do('''
                0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
               +0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
               +0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
               +0 > S 0:0(0) <...>
             +.01 < R. 0:0(0) ack 1 win 0
            ''')
            assert peer.socket(3).getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED

    Each ``do()`` runs its events as a script would (relative times count on from the previous
    step); a mismatch raises :class:`Failed` naming the line.  Unsupported features are refused.
    ``socket(fd)`` is the kernel's socket behind the script's fd number, ``tcp_info(fd)`` its
    ``tcpi_*`` values."""

    def __init__(self, *, family: int = 4, **config):
        # a lab's tolerance (LAB_TOLERANCE_USECS), stretched on an emulated CPU, unless the lab
        # gives its own
        config.setdefault("tolerance_usecs", lab_tolerance_usecs())
        self._run = Run(Script(path=None), Config(ip_version=family, **config).filled())
        self._steps = 0

    def __enter__(self) -> "ScriptedPeer":
        self._run.open()
        return self

    def __exit__(self, *exc) -> None:
        self._run.close()

    def do(self, text: str) -> None:
        """Run these events (lines of a script) now."""
        __tracebackhide__ = True
        self._steps += 1
        script = parse_script(text, Path(f"step{self._steps}"))
        refused = refusals(script)
        if refused:
            raise Refused(*refused[0])
        if self._steps == 1:
            self._run.start = time.time()      # the first step's times count from its start
        self._run.last = None                  # a step's relative times count from when it starts
        for ev in script.events:
            self._run._event(ev)
        self._run._await_blocking(final=False)

    def socket(self, fd: int) -> socket.socket:
        """A Python socket on the kernel's socket behind the script's ``fd`` (a duplicate)."""
        return socket.socket(fileno=os.dup(self._run.fds[fd]))

    def tcp_info(self, fd: int) -> dict:
        return socket_state(self._run.fds[fd])

    @property
    def exchange(self) -> list:
        return self._run.exchange


def run_script(path: Path, config: Config, *, text: str | None = None) -> Outcome:
    """Run one script in one IP version: pass, fail (with the line and what differed) or refused."""
    t0 = time.monotonic()
    path = Path(path)
    try:
        script = parse_script(text if text is not None else path.read_text(), path)
    except ConfigError as exc:
        return Outcome(path, config.ip_version, "refused", time.monotonic() - t0, str(exc))
    cfg = _configured(script, config)
    refused = refusals(script)
    if refused:
        line, what = refused[0]
        return Outcome(path, cfg.ip_version, "refused", time.monotonic() - t0,
                       f"line {line}: {what}" if line else what, line)
    run = Run(script, cfg)
    try:
        run.execute()
    except Failed as exc:
        return Outcome(path, cfg.ip_version, "fail", time.monotonic() - t0, str(exc), exc.line, run.exchange)
    except Refused as exc:
        return Outcome(path, cfg.ip_version, "refused", time.monotonic() - t0, str(exc), exc.line)
    except Exception as exc:   # tcplab's own error: a failed run that says so, never a pass
        import traceback
        where_ = traceback.extract_tb(exc.__traceback__)[-1]
        return Outcome(path, cfg.ip_version, "fail", time.monotonic() - t0,
                       f"tcplab could not run the script: {type(exc).__name__}: {exc} "
                       f"({Path(where_.filename).name}:{where_.lineno})", 0, run.exchange)
    return Outcome(path, cfg.ip_version, "pass", time.monotonic() - t0, "", 0, run.exchange)


@dataclass
class Recording:
    """What the kernel did with a script's given lines (record mode): every segment it sent, in
    ``exchange`` as (time, ">", frame, the given line it followed, seq, ack), the injected ones
    beside them, in the order they happened (a segment sent in answer to an injected one after
    it, though stamped a few microseconds before the injection's own clock reading); when each
    given line ran; the recorded results of system calls, by line."""
    exchange: list
    started: dict
    results: dict
    remote_isn: int = 0                # the peer's ISN, as the script wrote its SYN


def record_script(script: Script, config: Config, results_of: frozenset = frozenset()) -> Recording:
    """Run ``script`` (no ``>`` lines) in record mode; raises :class:`Refused` for what tcplab
    does not run and :class:`Failed` where a given line did not hold (a given result, a timing)."""
    refused = refusals(script)
    if refused:
        raise Refused(*refused[0])
    run = Run(script, _configured(script, config), record=True, results_of=results_of)
    run.execute()
    return Recording(list(run.exchange), dict(run.started), dict(run.results),
                     run.peer.remote_isn)


def _configured(script: Script, config: Config) -> Config:
    cfg = Config(**{**config.__dict__, "defines": dict(config.defines)})
    for key, value in script.options.items():
        if key in ("tolerance_usecs", "mss", "tcp_ts_tick_usecs", "bind_port", "connect_port", "mtu"):
            setattr(cfg, key, int(value))
        elif key == "tolerance_percent":
            cfg.tolerance_percent = float(value)
        elif key == "ip_version":
            cfg.ip_version = 6 if value == "ipv6" else 4
    return cfg.filled()
