"""TCP segments straight from frame bytes, without Scapy: for bulk captures (hundreds of thousands
of segments).  Gives the same :class:`tcplab.Segment` values as ``Segment.from_scapy`` for
Ethernet + IPv4/IPv6 + TCP frames (option names as Scapy spells them), and skips anything else.
The payload is what the capture kept (a headers-only capture keeps part of it or none).
"""
from __future__ import annotations

import socket
import struct
from typing import Iterator

from ..notation import flags_from_bits
from .trace import Segment

_REC = struct.Struct("=IIII")
_TCP = struct.Struct("!HHIIBBHHH")
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


#: link types whose frames read as Ethernet once a fake Ethernet header stands in for theirs:
#: (bytes of their own header, where its EtherType is, or None for raw IP)
_LINK = {1: (0, None), 113: (16, 14), 276: (20, 0), 101: (0, None), 228: (0, None), 229: (0, None), 12: (0, None)}
_PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
               b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1)}


def _pcap_format(data: bytes) -> tuple[str, int, int] | None:
    """(byte order, nanoseconds per timestamp unit, link type) of a classic pcap file this module
    reads itself; None for anything else (pcapng, other link types: Scapy's reader)."""
    if data[:4] not in _PCAP_MAGIC or len(data) < 24:
        return None
    order, scale = _PCAP_MAGIC[data[:4]]
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    return (order, scale, linktype) if linktype in _LINK else None


def read_pcap(path) -> list[Segment]:
    """The TCP segments of a classic pcap file, in capture order, from any tool (tcpdump,
    Wireshark's "pcap" format, tcplab): micro- or nanosecond timestamps, either byte order,
    Ethernet, Linux cooked (v1, v2) or raw IP frames.  Other files (pcapng, other link types)
    go through Scapy's reader: slower, and the same segments."""
    with open(path, "rb") as f:
        data = f.read()
    fmt = _pcap_format(data)
    if fmt is None:
        return _scapy_segments(path)
    order, scale, linktype = fmt
    if order == "<" and scale == 1 and linktype == 1 and struct.pack("=I", 1) == b"\x01\0\0\0":
        return segments_from_records(memoryview(data)[24:])      # tcplab's own: read in place
    return segments_from_records(_as_ethernet_ns(data, order, scale, linktype))


def _as_ethernet_ns(data: bytes, order: str, scale: int, linktype: int) -> bytes:
    """pcap records rewritten as tcplab's: native byte order, nanoseconds, Ethernet frames."""
    rec = struct.Struct(order + "IIII")
    out = bytearray()
    native = _REC.pack
    strip, etype_at = _LINK[linktype]
    pos, end = 24, len(data)
    while pos + 16 <= end:
        sec, frac, cap, wirelen = rec.unpack_from(data, pos)
        pos += 16
        frame = data[pos:pos + cap]
        pos += cap
        if linktype != 1:
            if etype_at is None:        # raw IP: the version nibble says which
                etype = b"\x86\xdd" if frame[:1] and frame[0] >> 4 == 6 else b"\x08\x00"
            else:
                etype = frame[etype_at:etype_at + 2]
            frame = b"\0" * 12 + etype + frame[strip:]
        out += native(sec, frac * scale, len(frame), len(frame)) + frame
    return bytes(out)


def _scapy_segments(path) -> list[Segment]:
    from .trace import _read_pcap, _segments
    return _segments(_read_pcap(path))


#: what the analysis needs of a segment, as a tuple (no Segment object, no options but the
#: SYN's window scale, no payload): time, src, sport, dst, dport, flag bits, seq, ack, window,
#: payload length, window scale (SYN only, else None)
HEADER_FIELDS = ("time", "src", "sport", "dst", "dport", "bits", "seq", "ack", "win", "length", "wscale")


def pcap_headers(path) -> list[tuple]:
    """The TCP headers of a classic pcap file as tuples (see HEADER_FIELDS), read in place: the
    fast path of ``tcplab analyze`` for captures of hundreds of megabytes.  Other files (pcapng)
    go through Scapy."""
    with open(path, "rb") as f:
        data = f.read()
    fmt = _pcap_format(data)
    if fmt is None:
        return [headers_of(s) for s in _scapy_segments(path)]
    order, scale, linktype = fmt
    rec = struct.Struct(order + "IIII").unpack_from
    tcp_unpack = _TCP.unpack_from
    frac_s = 1e-9 * scale
    strip, etype_at = _LINK[linktype]
    addr4: dict[bytes, str] = {}
    addr6: dict[bytes, str] = {}
    out = []
    append = out.append
    pos, end = 24, len(data)
    while pos + 16 <= end:
        sec, frac, cap, _ = rec(data, pos)
        pos += 16
        base = pos
        pos += cap
        if linktype == 1:
            etype, l3 = data[base + 12:base + 14], base + 14
        elif etype_at is None:
            etype, l3 = (b"\x86\xdd" if data[base] >> 4 == 6 else b"\x08\x00"), base
        else:
            etype, l3 = data[base + etype_at:base + etype_at + 2], base + strip
        if etype == b"\x08\x00":
            if data[l3 + 9] != 6 or l3 + 40 > pos:
                continue
            ihl = (data[l3] & 0x0F) * 4
            t = l3 + ihl
            a, b = data[l3 + 12:l3 + 16], data[l3 + 16:l3 + 20]
            src = addr4.get(a) or addr4.setdefault(a, socket.inet_ntop(socket.AF_INET, a))
            dst = addr4.get(b) or addr4.setdefault(b, socket.inet_ntop(socket.AF_INET, b))
            tcp_bytes = ((data[l3 + 2] << 8) | data[l3 + 3]) - ihl
        elif etype == b"\x86\xdd":
            if data[l3 + 6] != 6 or l3 + 60 > pos:
                continue
            t = l3 + 40
            a, b = data[l3 + 8:l3 + 24], data[l3 + 24:l3 + 40]
            src = addr6.get(a) or addr6.setdefault(a, socket.inet_ntop(socket.AF_INET6, a))
            dst = addr6.get(b) or addr6.setdefault(b, socket.inet_ntop(socket.AF_INET6, b))
            tcp_bytes = (data[l3 + 4] << 8) | data[l3 + 5]
        else:
            continue
        sport, dport, seq, ack, off, fl, win, _, _ = tcp_unpack(data, t)
        doff = (off >> 4) * 4
        length = tcp_bytes - doff
        wscale = None
        if fl & 0x02 and doff > 20:
            wscale = dict(parse_options(data[t + 20:t + doff])).get("WScale")
        append((sec + frac * frac_s, src, sport, dst, dport, fl | ((off & 1) << 8), seq, ack, win,
                length if length > 0 else 0, wscale))
    return out


def headers_of(seg: Segment) -> tuple:
    """A Segment as the tuple of ``pcap_headers``."""
    from ..notation import FLAG_BITS
    bits = 0
    for name in seg.flags:
        bits |= FLAG_BITS[name]
    return (seg.time, seg.src, seg.sport, seg.dst, seg.dport, bits, seg.seq, seg.ack, seg.win, seg.length,
            dict(seg.options).get("WScale") if "SYN" in seg.flags else None)
