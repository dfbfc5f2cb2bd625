"""The kernel's view of each sender: congestion window, ssthresh, smoothed RTT and the peer's
window, recorded with every capture beside the segments and the state changes.

Two sources, the same records (:class:`SenderSample`):

* **the ``tcp:tcp_probe`` tracepoint** (read like the state record, :mod:`tcplab.observe.perf`:
  the captures' clock, exact attribution by the topology's addresses, nothing left in the kernel
  after SIGKILL).  Linux fires it for every segment an established socket receives, at the start
  of ``tcp_rcv_established``, *before* the segment is processed: a sample shows the sender as it
  stood when that ACK arrived, so the effect of ACK *n* shows in the sample of ACK *n+1*.  The
  tracepoint's ssthresh is ``tcp_current_ssthresh()``: the threshold itself during recovery (CWR,
  Recovery), otherwise the larger of it and three quarters of cwnd.  A record gives the threshold
  itself (:class:`SenderRecord` undoes the three quarters: a rise to exactly ``(cwnd >> 1) +
  (cwnd >> 2)`` is not the threshold moving).
* **TCP_INFO sampled through sock_diag** where perf events are not available (rootless, most
  containers): every socket of the topology's hosts, dumped every :data:`SAMPLE_EVERY` seconds,
  a sample kept when cwnd, ssthresh or the congestion state changed.  It has no sequence numbers
  and misses what changes and changes back between two dumps; the record says it is sampled
  (:attr:`SenderRecord.sampled`).

``Connection.sender("client")`` gives one socket's record; ``tcplab tsg`` draws cwnd and
ssthresh under the time-sequence graph from the ``<capture>-sender.json`` a capture writes.
"""
from __future__ import annotations

import ipaddress
import json
import socket
import struct
import threading
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import TcplabError
from .perf import LogFactory, TracepointReader, TraceLog
from .sockdiag import dump, open_diag

TRACEPOINT = "tcp/tcp_probe"
FIELDS = {"saddr", "daddr", "sport", "dport", "family", "snd_nxt", "snd_una", "snd_cwnd", "ssthresh",
          "snd_wnd", "srtt", "rcv_wnd"}
# a bulk transfer at full speed makes over 200 000 records a second (one per segment received,
# data and ACKs alike; 156 bytes each): 2 MiB per CPU hold about 100 ms of them, and the reader
# drains at a quarter full
PAGES = 512
INFINITE = 0x7FFFFFFF            # TCP_INFINITE_SSTHRESH: no loss yet
SAMPLE_EVERY = 0.005
CA_STATES = {0: "Open", 1: "Disorder", 2: "CWR", 3: "Recovery", 4: "Loss"}
TRACED, SAMPLED = "tcp:tcp_probe", "TCP_INFO sampled through sock_diag"


@dataclass(frozen=True)
class SenderSample:
    """One socket's sending state at one moment.  Windows in segments (cwnd, ssthresh) or bytes
    (snd_wnd); ``ssthresh`` is None while it is still infinite (no loss yet)."""
    time: float                 # CLOCK_REALTIME seconds, like the captures' frame times
    local: tuple
    remote: tuple
    cwnd: int
    ssthresh: int | None
    srtt: float                 # seconds
    snd_wnd: int | None = None  # the peer's window (bytes); traced only
    snd_una: int | None = None  # absolute sequence numbers; traced only
    snd_nxt: int | None = None
    ca_state: str | None = None  # Open, Disorder, CWR, Recovery, Loss; sampled only


class SenderRecord(list):
    """One socket's :class:`SenderSample` list in time order, with where it came from."""

    def __init__(self, samples=(), source: str = TRACED):
        super().__init__(_threshold_itself(samples) if source == TRACED else samples)
        self.source = source

    @property
    def sampled(self) -> bool:
        """True when the record is TCP_INFO polled every few milliseconds, not the kernel's
        own record of every ACK."""
        return self.source == SAMPLED

    def at(self, time: float) -> SenderSample:
        """The sender as the kernel held it just after ``time``.  Traced: the first sample after
        ``time`` (it shows the state before the segment that triggered it, so after everything
        up to ``time``).  Sampled: the last sample at or before ``time``.  Both agree wherever
        the sender was still for a few sampling periods, e.g. between two flights.  Raises
        where the record does not reach ``time``."""
        if self.sampled:
            before = [s for s in self if s.time <= time]
            if before:
                return before[-1]
        else:
            for s in self:
                if s.time > time:
                    return s
        raise TcplabError(f"the sender record ({self.source}) has no sample for t={time:.6f}: "
                          f"{len(self)} samples" + (f", from {self[0].time:.6f} to {self[-1].time:.6f}" if self else ""))

    def steps(self) -> list[tuple[float, SenderSample]]:
        """``(from_time, sample)``: when each sample's values began to hold (traced: at the
        previous sample, since a sample shows the state before its own segment; sampled: at
        the sample itself).  What a graph draws as steps."""
        if self.sampled:
            return [(s.time, s) for s in self]
        return [(prev.time if prev is not None else s.time, s) for prev, s in zip([None] + self[:-1], self)]


def socket_record(samples: list[SenderSample], source: str, local: tuple, remote: tuple) -> SenderRecord:
    """The :class:`SenderRecord` of the socket ``local -> remote`` among a capture's samples."""
    return SenderRecord([s for s in samples if s.local == local and s.remote == remote], source)


def _threshold_itself(samples) -> list[SenderSample]:
    """One socket's traced samples with ``tcp_current_ssthresh()`` turned back into ssthresh:
    outside recovery the tracepoint shows ``max(ssthresh, 3/4 cwnd)``, so a value that rises to
    exactly three quarters of the sample's cwnd is the threshold unchanged."""
    from dataclasses import replace
    out, real = [], None
    for s in samples:
        shown = s.ssthresh
        if shown is not None and real is not None and shown > real and shown == (s.cwnd >> 1) + (s.cwnd >> 2):
            s = replace(s, ssthresh=real)
        real = s.ssthresh
        out.append(s)
    return out


def _sockaddr_address(raw: bytes, off: int) -> str:
    """The address of a ``struct sockaddr_in``/``sockaddr_in6`` stored in a record."""
    if struct.unpack_from("H", raw, off)[0] == socket.AF_INET6:
        return str(ipaddress.IPv6Address(raw[off + 8:off + 24]))
    return ".".join(map(str, raw[off + 4:off + 8]))


def _make_log() -> TraceLog:
    reader = TracepointReader(TRACEPOINT, FIELDS, PAGES)
    f = reader.fields
    so, do = f["saddr"][0], f["daddr"][0]
    # A bulk transfer makes a record per segment at both ends (hundreds of thousands a second),
    # parsed while the lab's own threads want the interpreter: one unpack per record for all its
    # numbers, and each socket address decoded once.
    names = ("sport", "dport", "snd_cwnd", "ssthresh", "srtt", "snd_wnd", "snd_una", "snd_nxt")
    order = sorted(names, key=lambda n: f[n][0])     # the record's layout order
    fmt, pos = "=", 0
    for name in order:
        off, size = f[name]
        fmt, pos = fmt + f"{off - pos}x" + {2: "H", 4: "I"}[size], off + size
    numbers = struct.Struct(fmt)
    at = [order.index(n) for n in names]
    addresses: dict[bytes, str] = {}

    def address(raw: bytes, off: int) -> str:
        key = raw[off:off + 24]      # family, port and address of a sockaddr_in or sockaddr_in6
        a = addresses.get(key)
        if a is None:
            if len(addresses) > 4096:
                addresses.clear()
            a = addresses[key] = _sockaddr_address(raw, off)
        return a

    def local_address(raw: bytes) -> str:
        return address(raw, so)

    def parse(t: float, raw: bytes) -> SenderSample:
        got = numbers.unpack_from(raw)
        sport, dport, cwnd, ssthresh, srtt, snd_wnd, una, nxt = (got[i] for i in at)
        return SenderSample(t, (address(raw, so), sport), (address(raw, do), dport), cwnd,
                            None if ssthresh >= INFINITE else ssthresh, srtt / 1e6, snd_wnd, una, nxt)
    return TraceLog(reader, local_address, parse)


#: This process's log of ``tcp:tcp_probe``; raises Unsupported where it cannot be read.
probe_log = LogFactory(_make_log)


class Sampler:
    """The fallback: TCP_INFO of every connected TCP socket of ``hosts``, through sock_diag,
    every :data:`SAMPLE_EVERY` seconds until :meth:`close`."""

    # ESTABLISHED, FIN_WAIT_1, CLOSE_WAIT, LAST_ACK, CLOSING: the states that send data
    STATES = (1 << 1) | (1 << 4) | (1 << 8) | (1 << 9) | (1 << 11)

    def __init__(self, hosts):
        self.socks = [h.ns.run(open_diag) for h in hosts]
        self.samples: list[SenderSample] = []
        self._last: dict[tuple, tuple] = {}
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tcplab-sender-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import time
        try:
            while not self._stop.wait(SAMPLE_EVERY):
                for sock in self.socks:
                    found = dump(sock, self.STATES, info=True)
                    now = time.time()
                    for row in found:
                        if row.info is not None:
                            self._keep(now, row.local, row.remote, row.info)
        except BaseException as exc:  # handed to close(), which raises it in the lab's thread
            self.error = exc

    def _keep(self, now: float, local: tuple, remote: tuple, info) -> None:
        key = (info.snd_cwnd, info.snd_ssthresh, info.ca_state)
        if self._last.get((local, remote)) == key:
            return
        self._last[(local, remote)] = key
        self.samples.append(SenderSample(now, local, remote, info.snd_cwnd,
                                         None if info.snd_ssthresh >= INFINITE else info.snd_ssthresh,
                                         info.rtt / 1e6, ca_state=CA_STATES.get(info.ca_state, str(info.ca_state))))

    def close(self) -> list[SenderSample]:
        self._stop.set()
        self._thread.join()
        for sock in self.socks:
            sock.close()
        if self.error is not None:
            raise self.error
        return self.samples


def save(path: Path, samples: list[SenderSample], source: str) -> None:
    """Write a capture's sender record beside its pcaps (``tcplab tsg`` reads it): one row per
    sample under the column names (a bulk transfer has hundreds of thousands of samples, and
    ``dataclasses.asdict`` took 6 s for 380 000)."""
    columns = [f.name for f in fields(SenderSample)]
    rows = [[getattr(s, c) for c in columns] for s in samples]
    path.write_text(json.dumps({"source": source, "columns": columns, "samples": rows}))


def load(path: Path) -> tuple[list[SenderSample], str]:
    """The samples and source of a record :func:`save` wrote (or tcplab 0.2's, a dict per sample)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TcplabError(f"cannot read the sender record {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
        rows = data["samples"]
        if "columns" in data:
            rows = [dict(zip(data["columns"], row)) for row in rows]
        samples = [SenderSample(**{**d, "local": tuple(d["local"]), "remote": tuple(d["remote"])})
                   for d in rows]
        return samples, data["source"]
    except (ValueError, KeyError, TypeError) as exc:
        raise TcplabError(f"{path} is not a tcplab sender record ({exc}); it is written by a "
                          "tcplab capture as <capture>-sender.json") from None
