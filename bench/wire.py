#!/usr/bin/env python3
"""Benchmark: how faithful the wire's delay and rate are, on whichever backend this kernel has.

For each requested delay, one-way times of UDP datagrams measured from the two captures (client
sent -> server received), against a baseline in the same run: the same measurement on an
unimpaired wire.  Two patterns: one datagram at a time (each sent once the previous one arrived)
and a back-to-back burst.  Then a rate: the time 1 MB takes at 8 Mbit/s against the ideal.

Prints, per case, the median, 99th percentile and maximum one-way time, and the ratio of the
median (less the baseline's) to the requested delay.
Usage: sudo .venv/bin/python bench/wire.py [--backend nft|netem] [--burst 1000]
"""
import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tcplab import Netem, Topology  # noqa: E402

SO_RCVBUFFORCE = 33


def one_way(spec, n, burst, backend):
    with Topology() as t:
        if spec is not None:
            t.impair(c2s=spec, backend=backend)
        srv = t.server.socket(4, socket.SOCK_DGRAM)
        srv.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        srv.bind((t.server.addr(4), 9999))
        srv.settimeout(5)
        cli = t.client.socket(4, socket.SOCK_DGRAM)
        with t.capture() as cap:
            for i in range(n):
                cli.sendto(b"%06d" % i + b"x" * 200, (t.server.addr(4), 9999))
                if not burst:
                    srv.recv(2048)          # the next one leaves once this one arrived
            if burst:
                for _ in range(n):
                    srv.recv(2048)
        sent = {p.load[:6]: float(p.time) for p in cap.packets["client"] if p.haslayer("UDP")}
        recv = {p.load[:6]: float(p.time) for p in cap.packets["server"] if p.haslayer("UDP")}
        d = sorted((recv[k] - sent[k]) * 1000 for k in sent if k in recv)
    return statistics.median(d), d[int(len(d) * 0.99) - 1], d[-1]


def rate(backend, kbit=8000, size=1_000_000):
    with Topology() as t:
        t.impair(c2s=Netem(rate_kbit=kbit), backend=backend)
        srv = t.server.listen(7788)
        c = t.client.connect(srv.address)
        peer = srv.accept()
        t0 = time.monotonic()
        sending = c.send(b"x" * size, wait=False)
        peer.recv_exactly(size, timeout=60)
        sending.wait(60)
        return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("nft", "netem"), default=None, help="default: what the kernel has")
    ap.add_argument("--burst", type=int, default=1000, help="datagrams in the burst pattern")
    a = ap.parse_args()
    from tcplab.wire.impair import chosen_backend
    backend = chosen_backend(a.backend)
    print(f"backend {backend}")
    for burst, n in ((False, 200), (True, a.burst)):
        pattern = f"burst of {n}" if burst else f"{n} one at a time"
        base = one_way(None, n, burst, backend)
        print(f"{pattern:>20}  no delay   median {base[0]:7.2f} ms  p99 {base[1]:7.2f}  max {base[2]:7.2f}  (baseline)")
        for ms in (5, 20, 50):
            m = one_way(Netem(delay=ms), n, burst, backend)
            print(f"{pattern:>20}  delay {ms:3d}  median {m[0]:7.2f} ms  p99 {m[1]:7.2f}  max {m[2]:7.2f}  "
                  f"ratio (median - baseline) / delay {(m[0] - base[0]) / ms:.3f}")
    took = rate(backend)
    ideal = 1_000_000 * 8 / 8_000_000
    print(f"rate 8000 kbit/s: 1 MB in {took:.3f} s; ideal (payload only) {ideal:.3f} s; ratio {took / ideal:.3f}")


if __name__ == "__main__":
    main()
