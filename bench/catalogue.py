#!/usr/bin/env python3
"""Benchmark: `pytest labs/` as written against the same catalogue on one worker, in one run.

The labs wait on kernel timers, not on the CPU, so the catalogue's floor is its critical path:
the longest single lab (pytest's --durations).  Prints each run's wall time, the longest lab, and
the ratios: as written / one worker, and as written / critical path (the issue's goal: 1.5x).
Usage: sudo .venv/bin/python bench/catalogue.py [-n ROUNDS]
"""
import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(extra: list[str], basetemp: Path) -> tuple[float, float, str]:
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pytest", "labs/", "-q", "-p", "no:cacheprovider", "--durations=1",
                        f"--basetemp={basetemp}", *extra], cwd=REPO, capture_output=True, text=True)
    wall = time.monotonic() - t0
    longest = re.search(r"^([\d.]+)s call", r.stdout, re.M)
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else f"exit {r.returncode}"
    return wall, float(longest.group(1)) if longest else float("nan"), summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--rounds", type=int, default=3)
    a = ap.parse_args()
    written, serial, longest = [], [], []
    with tempfile.TemporaryDirectory(prefix="tcplab-bench-catalogue-") as tmp:
        for i in range(a.rounds):
            for name, extra, out in (("as written", [], written), ("one worker (-n 0)", ["-n", "0"], serial)):
                wall, long_lab, summary = run(extra, Path(tmp) / f"bt{i}{len(extra)}")
                out.append(wall)
                longest.append(long_lab)
                print(f"round {i + 1} {name:18}: {wall:5.1f} s, longest lab {long_lab:.2f} s ({summary})", flush=True)
    w, s, c = statistics.median(written), statistics.median(serial), max(longest)
    print(f"medians: as written {w:.1f} s, one worker {s:.1f} s; critical path (longest lab) {c:.2f} s")
    print(f"as written / one worker: {w / s:.2f}x; as written / critical path: {w / c:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
