#!/usr/bin/env python3
"""Benchmark: two hosts + link + both captures ready + teardown.

Measures, in one run and interleaved, the median wall time of
  * tcplab:   Topology() (client, wire, server namespaces; bridge; veths; addresses; static
              neighbours; routes; pinned sysctls; offloads off) + Capture.start() on both ends
              + teardown;
  * baseline: the same topology built with `ip netns` / `ip link` shell commands (one `ip -batch`
              per namespace, which favours the baseline), sysctls through `ip netns exec`, a
              tcpdump per end awaited until it prints "listening on", then SIGINT and
              `ip netns del`.
Usage: sudo .venv/bin/python bench/fixture_setup.py [-n ROUNDS]
The last line reads: speedup vs ip-cli baseline: N.NNx
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tcplab import Topology  # noqa: E402
from tcplab.settings import IPV6_KNOBS, TCP_KNOBS  # noqa: E402


def ours(workdir):
    topo = Topology(workdir=workdir)
    cap = topo.capture().start()
    cap.close()
    topo.close()


def sh(*cmd, **kw):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def baseline(workdir, tag):
    c, s, w = f"tcb-c{tag}", f"tcb-s{tag}", f"tcb-w{tag}"
    try:
        for ns in (c, s, w):
            sh("ip", "netns", "add", ns)
        sysctl = "; ".join(f"echo '{k.value}' > /proc/sys/{k.key.replace('.', '/')}"
                           for k in TCP_KNOBS + IPV6_KNOBS if not k.optional)
        for ns in (c, s):
            sh("ip", "netns", "exec", ns, "sh", "-c", sysctl)
        sh("ip", "-n", w, "-batch", "-", input=(
            "link set lo up\n"
            "link add wire type bridge stp_state 0 forward_delay 0\n"
            f"link add c type veth peer name eth0 netns {c} address 02:00:c6:12:00:01\n"
            f"link add s type veth peer name eth0 netns {s} address 02:00:c6:12:00:02\n"
            "link set c master wire up\nlink set s master wire up\nlink set wire up\n").encode())
        for ns, me, peer, mac in ((c, 1, 2, "02:00:c6:12:00:02"), (s, 2, 1, "02:00:c6:12:00:01")):
            sh("ip", "-n", ns, "-batch", "-", input=(
                "link set lo up\n"
                f"addr add 198.18.0.{me}/24 dev eth0\n"
                f"addr add 2001:db8::{me}/64 dev eth0 nodad\n"
                "link set eth0 up\n"
                f"neigh add 198.18.0.{peer} lladdr {mac} dev eth0 nud permanent\n"
                f"neigh add 2001:db8::{peer} lladdr {mac} dev eth0 nud permanent\n"
                # iproute2 always locks rto_min
                f"route replace 198.18.0.{peer}/32 dev eth0 rto_min 20ms\n"
                f"route replace 2001:db8::{peer}/128 dev eth0 rto_min 20ms\n").encode())
        dumps = []
        for ns in (c, s):
            p = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-i", "eth0", "-U", "-w",
                                  os.path.join(workdir, f"{ns}.pcap")], stderr=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL)
            dumps.append(p)
        for p in dumps:  # ready = tcpdump says it is listening
            while b"listening on" not in p.stderr.readline():
                pass
        for p in dumps:
            p.send_signal(2)
            p.wait()
    finally:
        for ns in (c, s, w):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", "--rounds", type=int, default=20)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("the benchmark builds namespaces: run  sudo .venv/bin/python bench/fixture_setup.py")
    work = tempfile.mkdtemp(prefix="tcplab-bench-")
    ours(work)  # warm-up: imports, first netlink sockets
    baseline(work, "warm")
    t_ours, t_base = [], []
    for i in range(args.rounds):
        t0 = time.perf_counter()
        ours(work)
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        baseline(work, f"{os.getpid()}{i}")
        t_base.append(time.perf_counter() - t0)
    mo, mb = statistics.median(t_ours), statistics.median(t_base)
    print(f"rounds: {args.rounds} (interleaved)")
    print(f"tcplab   median {mo * 1000:7.1f} ms  (min {min(t_ours) * 1000:.1f}, max {max(t_ours) * 1000:.1f})")
    print(f"ip-cli   median {mb * 1000:7.1f} ms  (min {min(t_base) * 1000:.1f}, max {max(t_base) * 1000:.1f})")
    print(f"speedup vs ip-cli baseline: {mb / mo:.2f}x")


if __name__ == "__main__":
    main()
