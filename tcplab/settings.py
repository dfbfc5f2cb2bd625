"""The per-namespace kernel settings tcplab pins, and why each one matters to what the labs see.

Namespaces copy some TCP sysctls from the host at creation and default others; a lab that asserts
on option lists, windows or retransmission timing must not depend on what the host happens to have.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Knob:
    key: str
    value: str
    why: str
    optional: bool = False  # absent on older kernels: recorded as "absent", never faked


TCP_KNOBS: tuple[Knob, ...] = (
    Knob("net.ipv4.tcp_timestamps", "1", "SYNs carry the TS option (Linux default)"),
    Knob("net.ipv4.tcp_sack", "1", "SYNs carry sackOK (Linux default)"),
    Knob("net.ipv4.tcp_window_scaling", "1", "SYNs carry wscale (Linux default)"),
    Knob("net.ipv4.tcp_ecn", "0", "no ECE/CWR bits on SYNs: the flags in traces are exactly S, S., ."),
    Knob("net.ipv4.tcp_rmem", "4096 131072 6291456", "receive window and wscale do not depend on the host"),
    Knob("net.ipv4.tcp_wmem", "4096 16384 4194304", "send buffer does not depend on the host"),
    Knob("net.ipv4.tcp_syn_retries", "6", "a lost SYN is retried (Linux default)"),
    Knob("net.ipv4.tcp_synack_retries", "5", "a lost SYN-ACK is retried (Linux default)"),
    Knob("net.ipv4.tcp_congestion_control", "reno",
         "the textbook's congestion control on every kernel: a namespace may only choose one of the host's "
         "tcp_allowed_congestion_control, and reno is the one always allowed (this 6.18 allows reno bbr, "
         "Debian's 6.1 reno cubic)"),
    Knob("net.ipv4.tcp_recovery", "1", "losses are marked by RACK, by time (Linux default); 0: by duplicate ACKs"),
    Knob("net.ipv4.tcp_early_retrans", "3", "tail loss probes on (Linux default): a lost tail is re-sent by TLP"),
    Knob("net.ipv4.tcp_syn_linear_timeouts", "0",
         "classic SYN backoff 1 s, 2 s, 4 s ... instead of 4 linear 1 s retries (knob exists from Linux 6.5)",
         optional=True),
)

IPV6_KNOBS: tuple[Knob, ...] = (
    Knob("net.ipv6.conf.all.accept_dad", "0", "addresses usable at once, no DAD probes on the link"),
    Knob("net.ipv6.conf.default.accept_dad", "0", "addresses usable at once, no DAD probes on the link"),
    Knob("net.ipv6.conf.default.router_solicitations", "0", "no router solicitations on the link"),
)

#: Route metrics on each host's route to its peer.  rto_min must be *locked* to take effect.
RTO_MIN_MS = 20
RTAX_LOCK_RTO_MIN = 1 << 13  # 1 << RTAX_RTO_MIN


def describe(applied: dict[str, str]) -> list[str]:
    """Lines for the pytest report header: each knob and the value read back (or 'absent')."""
    lines = []
    for knob in TCP_KNOBS:
        lines.append(f"  {knob.key} = {applied.get(knob.key, 'absent')}")
    lines.append(f"  route to peer: rto_min {RTO_MIN_MS} ms (locked): retransmission labs run fast")
    return lines
