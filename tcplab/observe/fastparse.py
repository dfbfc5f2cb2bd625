"""TCP segments straight from frame bytes, without Scapy: for bulk captures (hundreds of thousands
of segments).  Gives the same :class:`tcplab.Segment` values as ``Segment.from_scapy`` for
Ethernet + IPv4/IPv6 + TCP frames (option names as Scapy spells them), and skips anything else.
The payload is what the capture kept (a headers-only capture keeps part of it or none).
"""
from __future__ import annotations

import socket
import struct
from typing import Iterator

from .trace import Segment, flags_from_bits

_REC = struct.Struct("=IIII")
_TCP = struct.Struct("!HHIIBBHHH")
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_TS = struct.Struct("!II")
_NOP_NOP_TS = b"\x01\x01\x08\x0a"
_OPT_NAMES = {2: "MSS", 3: "WScale", 4: "SAckOK", 5: "SAck", 8: "Timestamp"}


def iter_records(records: bytes) -> Iterator[tuple[float, int, bytes]]:
    """``(time, wire length, frame bytes)`` from pcap records with nanosecond timestamps."""
    mv = memoryview(records)
    pos, end = 0, len(records)
    unpack = _REC.unpack_from
    while pos < end:
        sec, nsec, cap, wirelen = unpack(mv, pos)
        pos += 16
        yield sec + nsec * 1e-9, wirelen, bytes(mv[pos:pos + cap])
        pos += cap


def parse_options(raw: bytes) -> tuple:
    if len(raw) == 12 and raw[:4] == _NOP_NOP_TS:
        return (("NOP", None), ("NOP", None), ("Timestamp", _TS.unpack_from(raw, 4)))
    out = []
    i, n = 0, len(raw)
    while i < n:
        kind = raw[i]
        if kind == 0:
            out.append(("EOL", None))
            break
        if kind == 1:
            out.append(("NOP", None))
            i += 1
            continue
        if i + 1 >= n:
            break
        size = raw[i + 1]
        if size < 2 or i + size > n:
            break
        body = raw[i + 2:i + size]
        name = _OPT_NAMES.get(kind)
        if name == "MSS" and size == 4:
            value = struct.unpack("!H", body)[0]
        elif name == "WScale" and size == 3:
            value = body[0]
        elif name == "SAckOK":
            value = b""
        elif name == "Timestamp" and size == 10:
            value = _TS.unpack(body)
        elif name == "SAck":
            value = struct.unpack(f"!{len(body) // 4}I", body[:len(body) // 4 * 4])
        else:
            name, value = kind, body
        out.append((name, value))
        i += size
    return tuple(out)


def segments_from_records(records: bytes) -> list[Segment]:
    """The TCP segments among pcap records (nanosecond timestamps), in capture order."""
    records = bytes(records)
    out: list[Segment] = []
    append = out.append
    flags_cache: dict[int, frozenset] = {}
    addr4: dict[bytes, str] = {}
    addr6: dict[bytes, str] = {}
    tcp_unpack = _TCP.unpack_from
    rec_unpack = _REC.unpack_from
    ts_unpack = _TS.unpack_from
    pos, end = 0, len(records)
    new = Segment.__new__
    setattr_ = object.__setattr__  # Segment is frozen; this is its constructor's own way
    while pos < end:
        sec, nsec, cap, _ = rec_unpack(records, pos)
        pos += 16
        frame = records[pos:pos + cap]
        pos += cap
        etype = frame[12:14]
        if etype == b"\x08\x00" and cap >= 34 and frame[23] == 6:
            ihl = (frame[14] & 0x0F) * 4
            t = 14 + ihl
            addrs = frame[26:34]
            pair = addr4.get(addrs)
            if pair is None:
                pair = addr4[addrs] = (socket.inet_ntop(socket.AF_INET, addrs[:4]),
                                       socket.inet_ntop(socket.AF_INET, addrs[4:]))
            fam, tcp_bytes = 4, ((frame[16] << 8) | frame[17]) - ihl
        elif etype == b"\x86\xdd" and cap >= 54 and frame[20] == 6:
            t = 54
            addrs = frame[22:54]
            pair = addr6.get(addrs)
            if pair is None:
                pair = addr6[addrs] = (socket.inet_ntop(socket.AF_INET6, addrs[:16]),
                                       socket.inet_ntop(socket.AF_INET6, addrs[16:]))
            fam, tcp_bytes = 6, (frame[18] << 8) | frame[19]
        else:
            continue
        if cap < t + 20:
            continue
        sport, dport, seq, ack, off, fl, win, _, urg = tcp_unpack(frame, t)
        doff = (off >> 4) * 4
        bits = fl | ((off & 1) << 8)
        flags = flags_cache.get(bits)
        if flags is None:
            flags = flags_cache[bits] = flags_from_bits(bits)
        length = tcp_bytes - doff
        if length < 0:
            length = 0
        if doff == 32 and frame[t + 20:t + 24] == _NOP_NOP_TS:
            options = ("NOP", None), ("NOP", None), ("Timestamp", ts_unpack(frame, t + 24))
        elif doff > 20:
            options = parse_options(frame[t + 20:t + doff])
        else:
            options = ()
        seg = new(Segment)
        setattr_(seg, "__dict__", {
            "time": sec + nsec * 1e-9, "family": fam, "src": pair[0], "sport": sport, "dst": pair[1],
            "dport": dport, "flags": flags, "seq": seq, "ack": ack, "win": win, "length": length,
            "urgptr": urg, "options": options, "payload": frame[t + doff:t + doff + length],
            "_key": addrs + frame[t:t + doff + length]})
        append(seg)
    return out
