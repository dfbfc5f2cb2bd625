#!/usr/bin/env python3
"""Benchmark: tcplab analyze against tshark's expert analysis on the same large capture.

Makes a capture of about --mb megabytes (tcpdump, full frames, in the client's namespace) of a
bulk transfer over a wire with 1 % loss, then times, on that file:
  * tshark -q -z expert -r FILE  (Wireshark's TCP analysis, summary only)
  * tcplab analyze --json FILE   (the same counts, tcplab's bulk parser)
and prints both times and the ratio tcplab / tshark (below 1: tcplab is faster), and whether
every count agrees with tshark's own (read from its per-frame fields in a second, untimed pass).
Usage: sudo .venv/bin/python bench/analyze.py [--mb 200] [--keep DIR]
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tcplab import Netem, Topology, until  # noqa: E402


FIELDS = {k: f"tcp.analysis.{v}" for k, v in {
    "retransmissions": "retransmission", "fast_retransmissions": "fast_retransmission",
    "spurious_retransmissions": "spurious_retransmission", "out_of_order": "out_of_order",
    "duplicate_acks": "duplicate_ack", "zero_windows": "zero_window", "zero_window_probes": "zero_window_probe",
    "keep_alives": "keep_alive", "window_updates": "window_update"}.items()}


def make_capture(path: Path, mb: int) -> None:
    with Topology() as t:
        dump = t.client.popen(["tcpdump", "-i", "eth0", "-n", "-s", "0", "-U", "--immediate-mode",
                               "-B", "65536", "-w", str(path), "tcp"])
        until(lambda: path.exists() and path.stat().st_size >= 24, 10, "tcpdump to start")
        t.impair(both=Netem(loss=1))
        srv = t.server.listen(7788)
        c = t.client.connect(srv.address)
        peer = srv.accept()
        n = mb * 1_000_000 * 1448 // 1514
        sending = c.send(bytes(n), wait=False)
        got = 0
        while got < n:
            got += len(peer.sock.recv(1 << 20))
        sending.wait(60)
        c.close()
        peer.close()
        dump.close()


def timed(argv):
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, check=True)
    return time.monotonic() - t0, r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--keep", type=Path, help="keep the capture in this folder")
    a = ap.parse_args()
    if shutil.which("tshark") is None:
        sys.exit("tshark is missing: sudo ci/setup --browser installs it")
    with tempfile.TemporaryDirectory(prefix="tcplab-bench-") as d:
        path = Path(d) / "bulk.pcap"
        make_capture(path, a.mb)
        size = path.stat().st_size / 1e6
        ts_time, ts_out = timed(["tshark", "-n", "-q", "-z", "expert", "-r", str(path)])
        tl_time, tl_out = timed([sys.executable, "-m", "tcplab", "analyze", "--json", str(path)])
        conns = json.loads(tl_out)["connections"]
        mine = {k: sum(c[k] for c in conns) for k in FIELDS}
        # tshark's own counts, from its per-frame fields (a second pass, not timed)
        cols = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", "tcp", "-T", "fields",
                               *sum((["-e", f] for f in FIELDS.values()), [])],
                              capture_output=True, text=True, check=True).stdout.splitlines()
        theirs = {k: sum(1 for line in cols if line.split("\t")[i]) for i, k in enumerate(FIELDS)}
        print(f"capture: {size:.0f} MB ({a.mb} MB requested, 1 % loss)")
        print(f"tshark -q -z expert: {ts_time:.2f} s")
        print(f"tcplab analyze:      {tl_time:.2f} s   ratio tcplab / tshark {tl_time / ts_time:.2f}")
        print("counts equal" if mine == theirs else f"counts differ: tcplab {mine}\n              tshark {theirs}")
        if a.keep:
            a.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, a.keep / path.name)


if __name__ == "__main__":
    main()
