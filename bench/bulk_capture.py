"""Bulk transfer over the wire: throughput with no capture, with tcplab's bulk capture and with
tcpdump, in one run, and whether tcplab's capture is complete.

    sudo .venv/bin/python bench/bulk_capture.py            # 200 MB, 3 rounds of each, medians
    sudo .venv/bin/python bench/bulk_capture.py --mb 50 --rounds 1

``tcplab`` is the capture a lab gets by default (both ends and the kernel's state record);
``+sender`` is the same capture asked to keep the sender record too (``sender=True``: a
``tcp:tcp_probe`` record for every segment either socket receives).

Each round builds a fresh topology, sends ``--mb`` MB from client to server over one TCP
connection (``sendall`` of 1 MiB chunks; the server reads with ``recv_into``), and times it from
the first byte sent to the last byte received.  The three modes alternate within a round so that
machine noise hits them alike.  tcpdump runs as ``tcpdump -s 128 -B 16384 -w FILE`` at both ends,
awaited until it says "listening on", and stopped with SIGINT (it then prints its kernel drops).

The last lines are the ones the issue asks for:
    bulk capture drops: N              (kernel drops at both ends, all tcplab rounds)
    bulk capture vs uncaptured: N.NNx  (median throughput ratio)
    bulk capture vs tcpdump: N.NNx
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tcplab import Topology  # noqa: E402
from tcplab.wait import until  # noqa: E402

PORT = 5001
CHUNK = 1 << 20


def transfer(topo: Topology, nbytes: int) -> float:
    """Seconds to move nbytes client -> server."""
    srv = topo.server.listen(port=PORT)
    client = topo.client.connect(srv.address)
    peer = srv.accept()
    peer.sock.setblocking(True)
    client.sock.setblocking(True)
    got = [0]

    def sink():
        buf = bytearray(CHUNK)
        while got[0] < nbytes:
            n = peer.sock.recv_into(buf)
            if not n:
                break
            got[0] += n
    reader = threading.Thread(target=sink)
    reader.start()
    data = memoryview(bytes(CHUNK))
    t0 = time.perf_counter()
    left = nbytes
    while left > 0:
        n = min(left, CHUNK)
        client.sock.sendall(data[:n])
        left -= n
    reader.join(120)
    dt = time.perf_counter() - t0
    if got[0] != nbytes:
        raise RuntimeError(f"only {got[0]} of {nbytes} bytes arrived")
    client.close()
    peer.close()
    srv.close()
    return dt


def run_none(nbytes):
    with Topology() as topo:
        return transfer(topo, nbytes), {}


def run_tcplab(nbytes, sender=False):
    with Topology() as topo:
        with topo.capture(bulk=True, sender=sender) as cap:
            dt = transfer(topo, nbytes)
        t0 = time.perf_counter()
        conn = cap.trace.connection(port=PORT)
        build = time.perf_counter() - t0
        sent_bytes = {s.seq: s.length for s in conn if conn.side(s) == "client" and s.length}
        segs = len(conn.segments) + len(conn.received)
        info = {"drops": sum(st["dropped"] for st in cap.stats.values()),
                "frames": sum(st["frames"] for st in cap.stats.values()),
                "segments": segs, "build_s": build, "data_bytes": sum(sent_bytes.values()),
                "lost": len(conn.lost())}
        return dt, info


def run_tcpdump(nbytes):
    with Topology() as topo:
        dumps = []
        for h in topo:
            p = h.popen(["tcpdump", "-i", h.ifname, "-n", "-s", "128", "-B", "16384", "-w",
                         str(Path(topo.workdir) / f"tcpdump-{h.name}.pcap")], name=f"tcpdump-{h.name}")
            dumps.append(p)
        for p in dumps:
            until(lambda p=p: "listening on" in p.stderr or p.proc.poll() is not None, 10, "tcpdump to listen")
            if p.proc.poll() is not None:
                raise RuntimeError(f"tcpdump failed: {p.stderr}")
        dt = transfer(topo, nbytes)
        drops = 0
        for p in dumps:
            os.killpg(p.proc.pid, signal.SIGINT)
            p.wait(30)
            m = re.search(r"(\d+) packets? dropped by kernel", p.stderr)
            drops += int(m.group(1)) if m else 0
        return dt, {"drops": drops}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=200, help="MB to transfer per run (default 200)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the three modes (default 3)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: sudo .venv/bin/python bench/bulk_capture.py", file=sys.stderr)
        return 2
    nbytes = a.mb * 1_000_000
    modes = {"uncaptured": run_none, "tcplab": run_tcplab, "tcpdump": run_tcpdump,
             "+sender": lambda n: run_tcplab(n, sender=True)}
    rates: dict[str, list[float]] = {m: [] for m in modes}
    drops = {"tcplab": 0, "tcpdump": 0, "+sender": 0}
    print(f"bulk transfer of {a.mb} MB client -> server, {a.rounds} rounds; Gbit/s per run")
    for r in range(a.rounds):
        for mode, fn in modes.items():
            dt, info = fn(nbytes)
            gbit = nbytes * 8 / dt / 1e9
            rates[mode].append(gbit)
            if mode in drops:
                drops[mode] += info["drops"]
            extra = ""
            if mode in ("tcplab", "+sender"):
                extra = (f"; {info['frames']} frames captured, kernel drops {info['drops']}, "
                         f"{info['segments']} segments in the trace built in {info['build_s']:.2f} s "
                         f"({info['segments'] / info['build_s']:,.0f}/s), data seen {info['data_bytes']:,} B, "
                         f"lost on the wire {info['lost']}")
            elif mode == "tcpdump":
                extra = f"; kernel drops {info['drops']}"
            print(f"  round {r + 1} {mode:>10}: {gbit:5.2f} Gbit/s ({dt:.2f} s){extra}", flush=True)
    med = {m: statistics.median(v) for m, v in rates.items()}
    for m, v in med.items():
        print(f"median {m:>10}: {v:.2f} Gbit/s")
    print(f"tcpdump kernel drops: {drops['tcpdump']}")
    print(f"bulk capture drops: {drops['tcplab'] + drops['+sender']}")
    print(f"bulk capture vs uncaptured: {med['tcplab'] / med['uncaptured']:.2f}x")
    print(f"bulk capture vs tcpdump: {med['tcplab'] / med['tcpdump']:.2f}x")
    print(f"bulk capture with the sender record vs tcpdump: {med['+sender'] / med['tcpdump']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
