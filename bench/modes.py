#!/usr/bin/env python3
"""Benchmark: the lab catalogue in each mode tcplab picks, in one run.

  * root:     `pytest labs/ -n 2` as root (namespaces directly; the kernel's state record);
  * rootless: the same as an unprivileged user (nobody), in a user namespace tcplab enters itself
              (a copy of this checkout and its packages that the user may read: see
              tests/integration/unprivileged.py).

Prints each run's wall time, passed/skipped/failed counts, and the ratio rootless / root.
Usage: sudo .venv/bin/python bench/modes.py [-n ROUNDS]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.unprivileged import make_user  # noqa: E402


def counts(out: str) -> str:
    return ", ".join(f"{m.group(1)} {m.group(2)}" for m in re.finditer(r"(\d+) (passed|skipped|failed|error)", out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--rounds", type=int, default=1)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (it compares root with an unprivileged user): sudo .venv/bin/python bench/modes.py")
    top = Path(tempfile.mkdtemp(prefix="tcplab-bench-modes-"))
    try:
        user = make_user(top)
        walls = {"root": [], "rootless": []}
        for i in range(a.rounds):
            for mode in ("root", "rootless"):
                args = ["-m", "pytest", "labs/", "-n", "2", "-q", "-p", "no:cacheprovider"]
                t0 = time.monotonic()
                if mode == "root":
                    r = subprocess.run([sys.executable, *args, f"--basetemp={top / 'bt'}"], cwd=REPO,
                                       capture_output=True, text=True)
                else:
                    r = user.run(["python", *args], timeout=900)
                wall = time.monotonic() - t0
                walls[mode].append(wall)
                print(f"round {i + 1} {mode:8}: {wall:5.1f} s  exit {r.returncode}  ({counts(r.stdout)})", flush=True)
        best = {m: min(w) for m, w in walls.items()}
        print(f"rootless / root (fastest rounds): {best['rootless'] / best['root']:.2f}x")
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
