"""The bulk path's parser gives the same segments as Scapy's."""
import struct

from tcplab.observe.fastparse import iter_records, parse_options, segments_from_records
from tcplab.observe.trace import Segment

from .pcapgen import C, S, X, Y, handshake_and_close, seg


def _records(packets):
    out = bytearray()
    for p in packets:
        raw = bytes(p)
        t = round(float(p.time) * 1e9)
        out += struct.pack("=IIII", t // 10**9, t % 10**9, len(raw), len(raw)) + raw
    return bytes(out)


def _v6(flags, seq, ack=0, payload=b"", opts=()):
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    p = Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=1, dport=2, flags=flags, seq=seq,
                                                                    ack=ack, options=list(opts)) / payload
    p = p.__class__(bytes(p))
    p.time = 5.25
    return p


def test_same_segments_as_scapy():
    packets = handshake_and_close() + [
        seg(C, S, "PA", X + 1, Y + 1, b"x" * 100, t=101.0,
            opts=[("NOP", None), ("NOP", None), ("Timestamp", (7, 9))]),
        seg(S, C, "A", Y + 1, X + 101, t=101.1, opts=[("NOP", None), ("NOP", None), ("SAck", (5, 10, 20, 30))]),
        _v6("S", 1, opts=[("MSS", 1440), ("WScale", 7), ("SAckOK", b""), ("EOL", None)]),
        _v6("PA", 2, 3, b"six"),
    ]
    expected = [Segment.from_scapy(p) for p in packets]
    got = segments_from_records(_records(packets))
    assert got == expected
    assert [s.options for s in got] == [s.options for s in expected]


def test_non_tcp_and_truncated_frames_are_skipped():
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    udp = Ether() / IP(src=C, dst=S) / UDP()
    udp.time = 1.0
    short = seg(C, S, "A", 1, 1, t=2.0)
    recs = _records([udp]) + struct.pack("=IIII", 2, 0, 30, 54) + bytes(short)[:30]
    assert segments_from_records(recs) == []
    assert [w for _, w, _ in iter_records(recs)] == [len(bytes(udp)), 54]


def test_malformed_options_stop_parsing_without_error():
    assert parse_options(b"\x02") == ()
    assert parse_options(b"\x01\x13\x01") == (("NOP", None),)   # length 1 < 2: stop
