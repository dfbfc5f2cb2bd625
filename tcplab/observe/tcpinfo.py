"""``struct tcp_info``: the kernel's view of one TCP socket, as ``getsockopt(TCP_INFO)``
(:meth:`tcplab.Conn.info`) and sock_diag's INET_DIAG_INFO (the sampled sender record) give it."""
from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, fields

#: struct tcp_info as Linux 6.x fills it (include/uapi/linux/tcp.h), in packetdrill's names (its
#: ``%{ }%`` blocks read them); ``_wscale`` and ``_flags`` are bit fields split out below
TCP_INFO_FIELDS = [
    ("tcpi_state", "B"), ("tcpi_ca_state", "B"), ("tcpi_retransmits", "B"), ("tcpi_probes", "B"),
    ("tcpi_backoff", "B"), ("tcpi_options", "B"), ("_wscale", "B"), ("_flags", "B"),
    ("tcpi_rto", "I"), ("tcpi_ato", "I"), ("tcpi_snd_mss", "I"), ("tcpi_rcv_mss", "I"), ("tcpi_unacked", "I"),
    ("tcpi_sacked", "I"), ("tcpi_lost", "I"), ("tcpi_retrans", "I"), ("tcpi_fackets", "I"),
    ("tcpi_last_data_sent", "I"), ("tcpi_last_ack_sent", "I"), ("tcpi_last_data_recv", "I"),
    ("tcpi_last_ack_recv", "I"), ("tcpi_pmtu", "I"), ("tcpi_rcv_ssthresh", "I"), ("tcpi_rtt", "I"),
    ("tcpi_rttvar", "I"), ("tcpi_snd_ssthresh", "I"), ("tcpi_snd_cwnd", "I"), ("tcpi_advmss", "I"),
    ("tcpi_reordering", "I"), ("tcpi_rcv_rtt", "I"), ("tcpi_rcv_space", "I"), ("tcpi_total_retrans", "I"),
    ("tcpi_pacing_rate", "Q"), ("tcpi_max_pacing_rate", "Q"), ("tcpi_bytes_acked", "Q"),
    ("tcpi_bytes_received", "Q"), ("tcpi_segs_out", "I"), ("tcpi_segs_in", "I"), ("tcpi_notsent_bytes", "I"),
    ("tcpi_min_rtt", "I"), ("tcpi_data_segs_in", "I"), ("tcpi_data_segs_out", "I"), ("tcpi_delivery_rate", "Q"),
    ("tcpi_busy_time", "Q"), ("tcpi_rwnd_limited", "Q"), ("tcpi_sndbuf_limited", "Q"), ("tcpi_delivered", "I"),
    ("tcpi_delivered_ce", "I"), ("tcpi_bytes_sent", "Q"), ("tcpi_bytes_retrans", "Q"), ("tcpi_dsack_dups", "I"),
    ("tcpi_reord_seen", "I"), ("tcpi_rcv_ooopack", "I"), ("tcpi_snd_wnd", "I"), ("tcpi_rcv_wnd", "I"),
    ("tcpi_rehash", "I"), ("tcpi_total_rto", "H"), ("tcpi_total_rto_recoveries", "H"), ("tcpi_total_rto_time", "I"),
]
_TCP_INFO = struct.Struct("=" + "".join(f for _, f in TCP_INFO_FIELDS))
TCP_INFO_SIZE = _TCP_INFO.size


#: where each field ends in the struct (an older kernel returns a shorter one)
_ENDS = dict(zip((k for k, _ in TCP_INFO_FIELDS),
                 itertools.accumulate(struct.calcsize("=" + f) for _, f in TCP_INFO_FIELDS)))


def tcp_info_values(raw: bytes, *, filled_only: bool = False) -> dict[str, int]:
    """Every field of a raw ``struct tcp_info`` (getsockopt's, or sock_diag's INET_DIAG_INFO) by
    its ``tcpi_`` name.  Fields an older kernel does not return are 0, or, ``filled_only``,
    absent (a script's check of a field this kernel lacks then fails by name, never reads 0)."""
    v = dict(zip((k for k, _ in TCP_INFO_FIELDS), _TCP_INFO.unpack(raw[:TCP_INFO_SIZE].ljust(TCP_INFO_SIZE, b"\0"))))
    v["tcpi_snd_wscale"], v["tcpi_rcv_wscale"] = v["_wscale"] & 0xF, v["_wscale"] >> 4
    v["tcpi_delivery_rate_app_limited"] = v["_flags"] & 1
    return {k: x for k, x in v.items() if not k.startswith("_") and not (filled_only and _ENDS.get(k, 0) > len(raw))}


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
        v = tcp_info_values(raw)
        return cls(**{f.name: v[f"tcpi_{f.name}"] for f in fields(cls)})
