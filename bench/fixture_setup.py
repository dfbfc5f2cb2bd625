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
  * floor:    the same topology with the fewest kernel calls this benchmark could find, and no
              checks: three threads unshare in parallel, each namespace opens one netlink socket,
              sysctls are written without reading back, each veth is created with its peer in
              the host, its MAC, its master and up in one request, addresses/neighbours/routes
              are one request each, offloads go off in one ETHTOOL_SFEATURES ioctl per end (the
              feature bit numbers are looked up once, outside the timing), and each capture is
              a packet socket created with protocol 0 and bound; then it polls, as tcplab does, until
              the wire carries traffic (bridge ports forwarding, links up, IPv6 address local).
              Teardown closes the sockets
              and ends the threads; the kernel reclaims the namespaces.
Usage: sudo .venv/bin/python bench/fixture_setup.py [-n ROUNDS]
The last lines read: speedup vs ip-cli baseline: N.NNx, then ratio vs floor: N.NNx
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

from tcplab import Topology, until  # noqa: E402
from tcplab.settings import IPV6_KNOBS, TCP_KNOBS  # noqa: E402


def ours(workdir):
    topo = Topology(workdir=workdir)
    cap = topo.capture().start()
    cap.close()
    topo.close()


class _Floor:
    """The raw floor (see the module docstring).  Feature bits are looked up once."""

    def __init__(self):
        self.bits = None

    def _ns_thread(self, fn, result, i, ready, go):
        from tcplab.wire.netns import _unshare_net
        _unshare_net()
        result[i] = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        ready.release()
        while True:
            job = go[i].get()
            if job is None:
                return
            fn_, fut = job
            try:
                fut.append(fn_())
            except BaseException as exc:
                fut.append(exc)

    def run(self):
        import queue
        import socket
        import threading
        from pyroute2 import IPRoute
        from tcplab.settings import IPV6_KNOBS, TCP_KNOBS
        ready = threading.Semaphore(0)
        fds = [None, None, None]
        go = [queue.SimpleQueue() for _ in range(3)]
        threads = [threading.Thread(target=self._ns_thread, args=(None, fds, i, ready, go)) for i in range(3)]
        for t in threads:
            t.start()
        for _ in range(3):
            ready.acquire()

        def call(i, fn):
            done = threading.Event()
            out = []
            go[i].put((lambda: (fn(), done.set())[0], out))
            return out, done

        def wait(job):
            out, done = job
            done.wait()
            if out and isinstance(out[0], BaseException):
                raise out[0]
            return out[0] if out else None
        macs = ("02:00:c6:12:00:01", "02:00:c6:12:00:02")
        ips = (("198.18.0.1", "2001:db8::1"), ("198.18.0.2", "2001:db8::2"))
        knobs = [(("/proc/sys/" + k.key.replace(".", "/")), k.value) for k in TCP_KNOBS + IPV6_KNOBS]
        iprs = {}

        def host_sysctls(i):
            iprs[i] = IPRoute()
            for path, value in knobs:
                try:
                    with open(path, "w") as f:
                        f.write(value)
                except FileNotFoundError:
                    pass

        def wire():
            ipr = iprs[2] = IPRoute()
            ipr.link("set", index=1, state="up")
            ipr.link("add", ifname="wire", kind="bridge", br_stp_state=0, br_forward_delay=0, state="up")
            br = ipr.link_lookup(ifname="wire")[0]
            for i, port in enumerate(("c", "s")):
                ipr.link("add", ifname=port, kind="veth", master=br, state="up",
                         peer={"ifname": "eth0", "address": macs[i], "net_ns_fd": fds[i]})

        def host(i):
            ipr = iprs[i]
            ipr.link("set", index=1, state="up")
            idx = ipr.link_lookup(ifname="eth0")[0]
            self._offloads_off("eth0")
            ipr.addr("add", index=idx, address=ips[i][0], prefixlen=24)
            ipr.addr("add", index=idx, address=ips[i][1], prefixlen=64, flags=0x02)
            ipr.link("set", index=idx, state="up")
            for fam in (0, 1):
                ipr.neigh("add", dst=ips[1 - i][fam], lladdr=macs[1 - i], ifindex=idx, state=0x80)
                ipr.route("replace", dst=f"{ips[1 - i][fam]}/{32 if fam == 0 else 128}", oif=idx,
                          metrics={"rto_min": 20, "lock": 1 << 13},
                          family=socket.AF_INET if fam == 0 else socket.AF_INET6)
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            sock.bind(("eth0", 3))
            return sock

        for j in [call(i, lambda i=i: host_sysctls(i)) for i in (0, 1)]:
            wait(j)
        wait(call(2, wire))
        socks = [wait(j) for j in [call(i, lambda i=i: host(i)) for i in (0, 1)]]

        # Ready means the wire carries traffic (as tcplab's topology waits for): both bridge ports
        # forwarding, both eth0 operationally up with the IPv6 address a local route.
        def wire_ready():
            for port in ("c", "s"):
                info = iprs[2].get_links(iprs[2].link_lookup(ifname=port)[0])[0].get_attr("IFLA_LINKINFO")
                data = info.get_attr("IFLA_INFO_SLAVE_DATA") if info else None
                if not data or data.get_attr("IFLA_BRPORT_STATE") != 3:
                    return False
            return True

        def host_ready(i):
            link = iprs[i].get_links(iprs[i].link_lookup(ifname="eth0")[0])[0]
            if link.get_attr("IFLA_OPERSTATE") != "UP":
                return False
            try:
                return iprs[i].route("get", dst=ips[i][1], family=socket.AF_INET6)[0]["type"] == 2
            except Exception:
                return False
        until(lambda: wait(call(2, wire_ready)) and all(wait(call(i, lambda i=i: host_ready(i))) for i in (0, 1)),
              10, "the floor's wire to carry traffic")
        # teardown
        for i, ipr in iprs.items():
            wait(call(i, ipr.close))
        for i in range(3):
            go[i].put(None)
        for t in threads:
            t.join()
        for fd in fds:
            os.close(fd)
        threading.Thread(target=lambda: [x.close() for x in socks]).start()

    def _offloads_off(self, ifname):
        """One ETHTOOL_SFEATURES ioctl clearing the offload bits (their numbers looked up once)."""
        import struct
        from tcplab.lab.topology import ETHTOOL_SFEATURES, OFFLOADS_OFF, _ethtool, _feature_bits
        if self.bits is None:
            if not _feature_bits:
                from tcplab.lab.topology import _disable_offloads
                _disable_offloads(ifname)  # fills the cache (warm-up, outside the timing)
            self.words = (max(_feature_bits.values()) + 32) // 32
            self.valid = [0] * self.words
            for n in OFFLOADS_OFF:
                if n in _feature_bits:
                    self.valid[_feature_bits[n] // 32] |= 1 << (_feature_bits[n] % 32)
            self.bits = True
        _ethtool(ifname, bytearray(struct.pack("II", ETHTOOL_SFEATURES, self.words)
                                   + b"".join(struct.pack("II", v, 0) for v in self.valid)))


FLOOR = _Floor()


def floor(workdir):
    FLOOR.run()


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
    with tempfile.TemporaryDirectory(prefix="tcplab-bench-") as work:
        ours(work)  # warm-up: imports, first netlink sockets
        baseline(work, "warm")
        floor(work)
        t_ours, t_base, t_floor = [], [], []
        modes = [(t_ours, lambda i: ours(work)), (t_floor, lambda i: floor(work)),
                 (t_base, lambda i: baseline(work, f"{os.getpid()}{i}"))]
        for i in range(args.rounds):
            # The order turns each round: the kernel reclaims a torn-down topology's namespaces
            # in the background, and that work lands on whichever mode runs next.
            for times, run in modes[i % 3:] + modes[:i % 3]:
                t0 = time.perf_counter()
                run(i)
                times.append(time.perf_counter() - t0)
    mo, mb, mf = statistics.median(t_ours), statistics.median(t_base), statistics.median(t_floor)
    print(f"rounds: {args.rounds} (interleaved, the order turning each round)")
    for name, t in (("tcplab", t_ours), ("floor", t_floor), ("ip-cli", t_base)):
        print(f"{name:8} median {statistics.median(t) * 1000:7.1f} ms  (min {min(t) * 1000:.1f}, "
              f"max {max(t) * 1000:.1f})")
    print(f"speedup vs ip-cli baseline: {mb / mo:.2f}x")
    print(f"ratio vs floor (fastest runs): {min(t_ours) / min(t_floor):.2f}x")
    print(f"ratio vs floor: {mo / mf:.2f}x")


if __name__ == "__main__":
    main()
