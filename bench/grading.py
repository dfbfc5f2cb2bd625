#!/usr/bin/env python3
"""Benchmark: grading throughput of ``tcplab grade`` on assignment 1.

Grades N copies of assignments/1-client/reference (default 100) with -j JOBS (default: the
machine's cores), and, in the same run, a baseline of B copies graded one at a time (-j 1).
Each copy is a full grading run: a pytest process, 7 tests, each with its own lab (namespaces,
wire, both captures), the student's client in the sandbox, and results.json with pcaps and
ladders.  Every copy must score 10 of 10, or the run fails.

Usage: sudo .venv/bin/python bench/grading.py [-n N] [-j JOBS] [-b B]
The last lines read: submissions per minute: X, 100 submissions take: Y s (target < 300 s),
and parallel vs one at a time: R.RRx
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tcplab.grading import Assignment  # noqa: E402
from tcplab.grading.grader import grade_many  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run(assignment, n: int, jobs: int, work: Path) -> float:
    subs = []
    for i in range(n):
        d = work / "class" / f"student{i:03d}"
        shutil.copytree(assignment.path / "reference", d)
        subs.append(d)
    t0 = time.monotonic()
    grades = grade_many(assignment, subs, work / "out", jobs=jobs)
    took = time.monotonic() - t0
    bad = [g for g in grades if g.score != g.max_score]
    if bad:
        sys.exit(f"{len(bad)} copies of the reference did not score full marks, e.g. {bad[0]}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100, help="submissions graded in parallel (default 100)")
    ap.add_argument("-j", type=int, default=os.cpu_count() or 1, help="at once (default: cores)")
    ap.add_argument("-b", type=int, default=10, help="baseline submissions graded one at a time (default 10)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("the benchmark builds network namespaces: sudo .venv/bin/python bench/grading.py")
    assignment = Assignment.load(REPO / "assignments" / "1-client")
    with tempfile.TemporaryDirectory(prefix="tcplab-bench-grade-") as tmp:
        base = run(assignment, a.b, 1, Path(tmp) / "serial")
        par = run(assignment, a.n, a.j, Path(tmp) / "parallel")
    serial_rate, par_rate = a.b / base * 60, a.n / par * 60
    print(f"one at a time: {a.b} submissions in {base:.1f} s ({base / a.b:.2f} s each)")
    print(f"-j {a.j}: {a.n} submissions in {par:.1f} s ({par / a.n:.2f} s each)")
    print(f"submissions per minute: {par_rate:.1f}")
    print(f"100 submissions take: {100 / par_rate * 60:.0f} s (target < 300 s)")
    print(f"parallel vs one at a time: {par_rate / serial_rate:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
