"""``struct tcp_info``: the kernel's view of one TCP socket, as ``getsockopt(TCP_INFO)``
(:meth:`tcplab.Conn.info`) and sock_diag's INET_DIAG_INFO (the sampled sender record) give it."""
from __future__ import annotations

import struct
from dataclasses import dataclass

#: struct tcp_info up to tcpi_total_retrans (include/uapi/linux/tcp.h; the same on every kernel
#: tcplab supports): 8 one-byte fields, then 24 u32
_TCP_INFO = struct.Struct("<8B24I")


@dataclass(frozen=True)
class TcpInfo:
    """The fields of ``struct tcp_info`` a lab asserts on.  Times in microseconds, windows in
    segments (``snd_cwnd``, ``snd_ssthresh``), sizes in bytes."""
    ca_state: int          # 0 Open, 1 Disorder, 2 CWR, 3 Recovery, 4 Loss
    retransmits: int       # consecutive timeouts of the current RTO
    probes: int            # zero-window probes sent without an answer
    backoff: int
    options: int
    snd_wscale: int
    rcv_wscale: int
    rto: int
    ato: int
    snd_mss: int
    rcv_mss: int
    unacked: int
    sacked: int
    lost: int
    retrans: int
    rtt: int
    snd_ssthresh: int
    snd_cwnd: int
    advmss: int
    reordering: int
    total_retrans: int

    @classmethod
    def unpack(cls, raw: bytes) -> "TcpInfo":
        v = _TCP_INFO.unpack_from(raw.ljust(_TCP_INFO.size, b"\0"))
        (_state, ca_state, retransmits, probes, backoff, options, wscale, _b7,
         rto, ato, snd_mss, rcv_mss, unacked, sacked, lost, retrans, _fackets,
         _lds, _las, _ldr, _lar, _pmtu, _rcv_ssthresh, rtt, _rttvar, snd_ssthresh, snd_cwnd, advmss,
         reordering, _rcv_rtt, _rcv_space, total_retrans) = v
        return cls(ca_state=ca_state, retransmits=retransmits, probes=probes, backoff=backoff, options=options,
                   snd_wscale=wscale & 0xF, rcv_wscale=wscale >> 4, rto=rto, ato=ato, snd_mss=snd_mss,
                   rcv_mss=rcv_mss, unacked=unacked, sacked=sacked, lost=lost, retrans=retrans, rtt=rtt,
                   snd_ssthresh=snd_ssthresh, snd_cwnd=snd_cwnd, advmss=advmss, reordering=reordering,
                   total_retrans=total_retrans)
