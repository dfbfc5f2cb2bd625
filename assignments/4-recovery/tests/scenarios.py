"""The scenarios of assignment 4, played by two real kernels (no student code runs here).

Each scenario is a transfer from the client to the server over a wire without delay that loses
exact data segments once.  Both hosts run Reno (the namespace default), ACK every segment at once
(quickack) and retransmit after 200 ms at the least, so a timeout can never be mistaken for a
faster recovery.  The truth is the kernel's own: its counters say which recovery ran, and
TCP_INFO, read once every byte is acknowledged, says the ssthresh it left."""
from __future__ import annotations

import socket
from dataclasses import dataclass

from tcplab import Drop, until

PORT = 7791
MSS = 1448
#: counter -> the recovery it counts (the client's namespace is fresh: only this transfer's)
KINDS = {"TCPSackRecovery": "fast_retransmit", "TCPRenoRecovery": "fast_retransmit",
         "TCPLossProbes": "tail_loss_probe", "TCPTimeouts": "timeout"}
INFINITE = 0x7FFFFFFF


@dataclass
class Outcome:
    kinds: list            # the recoveries the client's kernel counted (one, by design)
    ssthresh: int | None   # None: still infinite, nothing reduced it
    cwnd: int
    counters: dict
    conn: object

    def describe(self) -> str:
        counted = {k: v for k, v in self.counters.items() if k in KINDS and v}
        return (f"the client's kernel counted {counted or 'no recovery'}; once every byte was acknowledged "
                f"its TCP_INFO read ssthresh {self.ssthresh if self.ssthresh is not None else 'none (infinite)'}"
                f" and cwnd {self.cwnd}")


def _transfer(hosts, size: int, drops: list, *, probes: bool, cc: str = "reno") -> Outcome:
    hosts.server.quickack(True)
    for h in hosts:
        h.rto_min(200)
        # tail-loss probes only where the scenario says so: elsewhere a probe fired on a busy
        # machine could re-send a segment that arrived, and Linux would undo the reduction
        h.sysctl("net.ipv4.tcp_early_retrans", 3 if probes else 0)
    with hosts.one_cpu(), hosts.capture() as cap:
        server = hosts.server.listen(port=PORT)
        client = hosts.client.connect(server.address, wait=False)
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
        client.wait_connected()
        peer = server.accept()
        hosts.impair(drops=drops)
        sending = client.send(bytes(size), wait=False)
        assert peer.recv_exactly(size, timeout=20) == bytes(size)
        sending.wait(10)
        until(lambda: client.info().unacked == 0, 10, "every byte to be acknowledged")
        info = client.info()
    counters = hosts.client.counters()
    kinds = sorted({kind for counter, kind in KINDS.items() if counters.get(counter)})
    return Outcome(kinds, None if info.snd_ssthresh >= INFINITE else info.snd_ssthresh, info.snd_cwnd,
                   counters, cap.trace.connection(port=PORT))


def middle_loss(hosts) -> Outcome:
    return _transfer(hosts, 100_000, [Drop(">", "*", nth=4, payload=True)], probes=False)


def cubic_middle_loss(hosts) -> Outcome:
    return _transfer(hosts, 100_000, [Drop(">", "*", nth=4, payload=True)], probes=False, cc="cubic")


def tail_loss(hosts) -> Outcome:
    return _transfer(hosts, 10 * MSS, [Drop(">", "*", nth=10, payload=True)], probes=True)


def whole_flight_lost(hosts) -> Outcome:
    return _transfer(hosts, 10 * MSS, [Drop(">", "*", nth=1, payload=True, count=10)], probes=False)


SCENARIOS = {f.__name__: f for f in (middle_loss, cubic_middle_loss, tail_loss, whole_flight_lost)}
