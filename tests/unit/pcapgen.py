"""Writes pcaps of synthetic TCP exchanges for the unit tests (no root, no kernel)."""
from __future__ import annotations

C, S = "198.18.0.1", "198.18.0.2"
CMAC, SMAC = "02:00:c6:12:00:01", "02:00:c6:12:00:02"
X, Y = 3626544836, 1739326486  # the seed's ISNs


def seg(src, dst, flags, seq, ack=0, payload=b"", t=0.0, sport=3337, dport=7788, win=502, opts=()):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    fwd = src == C
    p = (Ether(src=CMAC if fwd else SMAC, dst=SMAC if fwd else CMAC)
         / IP(src=src, dst=dst)
         / TCP(sport=sport if fwd else dport, dport=dport if fwd else sport, flags=flags,
               seq=seq % 2**32, ack=ack % 2**32, window=win, options=list(opts)) / payload)
    p = p.__class__(bytes(p))
    p.time = t
    return p


def handshake_and_close(t0=100.0):
    return [
        seg(C, S, "S", X, t=t0, win=64240, opts=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)),
                                                ("NOP", None), ("WScale", 7)]),
        seg(S, C, "SA", Y, X + 1, t=t0 + 0.001, win=65160),
        seg(C, S, "A", X + 1, Y + 1, t=t0 + 0.002),
        seg(C, S, "PA", X + 1, Y + 1, b"hello", t=t0 + 0.010),
        seg(S, C, "A", Y + 1, X + 6, t=t0 + 0.011),
        seg(C, S, "FA", X + 6, Y + 1, t=t0 + 0.020),
        seg(S, C, "FA", Y + 1, X + 7, t=t0 + 0.021),
        seg(C, S, "A", X + 7, Y + 2, t=t0 + 0.022),
    ]


def write(path, packets):
    from scapy.utils import wrpcap
    wrpcap(str(path), packets)
    return path
