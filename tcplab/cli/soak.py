"""``python -m tcplab soak``: run a pytest selection many times in a row and count what fails.

    sudo .venv/bin/python -m tcplab soak                      # the catalogue (labs/ -n 2), 10 runs
    sudo .venv/bin/python -m tcplab soak -N 100 -- labs/ -n 2
    sudo .venv/bin/python -m tcplab soak -N 20 --vm           # CI's netem stage in the QEMU VM

Each run gets its own folder under ``--out``: its JUnit XML, its console output, and (through
``--tcplab-artifacts``) the pcaps and failure text of every failed test.  The folders of green runs
are removed, those of failed runs kept.  The table at the end gives, per test that ever failed, how
many runs it failed in, and the wall time of the runs (min / median / max).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SELECTION = ["labs/", "-n", "2"]


def junit_results(path: Path) -> list[tuple[str, str, str]]:
    """``(test id, outcome, message)`` for every test case of a JUnit XML file; outcome is
    passed, failed, error or skipped.  The id is pytest's node id (``labs/test_x.py::test_y[p]``)."""
    root = ET.parse(path).getroot()
    out = []
    for case in root.iter("testcase"):
        cls, name = case.get("classname", ""), case.get("name", "")
        parts = cls.split(".")
        # classname "labs.test_close" or "labs.test_close.TestX": the module path is the prefix
        # whose file exists; fall back to the dotted form.
        nodeid = f"{cls}::{name}"
        for i in range(len(parts), 0, -1):
            mod = Path(*parts[:i]).with_suffix(".py")
            if (REPO / mod).exists():
                nodeid = "::".join([str(mod), *parts[i:], name])
                break
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = el.get("message") or (el.text or "").strip()
                break
        out.append((nodeid, outcome, message or ""))
    return out


def failure_summary(junit_files: list[Path], *, lines: int = 3) -> str:
    """The failed and errored tests of some JUnit files, one block each: the test id and the
    first lines of its failure text.  Empty when everything passed."""
    blocks = []
    for path in junit_files:
        if not path.exists():
            blocks.append(f"{path}: no JUnit XML (the stage did not get as far as running pytest)")
            continue
        for nodeid, outcome, message in junit_results(path):
            if outcome in ("failed", "error"):
                text = "\n".join("    " + ln for ln in message.splitlines()[:lines])
                blocks.append(f"  {outcome.upper()} {nodeid}\n{text}")
    return "\n".join(blocks)


def _run_once(k: int, folder: Path, args: argparse.Namespace, selection: list[str]) -> tuple[float, int, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    junit = folder / "junit.xml"
    py = sys.executable
    if args.vm:
        # ci/kernel-matrix: CI's own command, which holds the netem stage's selection
        cmd = [str(REPO / "ci" / "kernel-matrix"), "--junit", str(junit), "--artifacts", str(folder / "artifacts")]
        if args.netem or not args.pytest_args:
            cmd.append("--netem")
        if args.pytest_args:
            cmd += ["--", *args.pytest_args]
    else:
        cmd = [py, "-m", "pytest", *selection, f"--junitxml={junit}", f"--basetemp={folder / 'tmp'}",
               f"--tcplab-artifacts={folder / 'artifacts'}", "-q", "-p", "no:cacheprovider"]
    t0 = time.monotonic()
    with open(folder / "output.txt", "wb") as out:
        rc = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}).returncode
    return time.monotonic() - t0, rc, junit


def soak(args: argparse.Namespace) -> int:
    selection = args.pytest_args or DEFAULT_SELECTION
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    walls: list[float] = []
    fails: Counter[str] = Counter()
    bad_runs: list[tuple[int, int, Path]] = []
    tests_seen = 0
    what = "CI's netem stage in the VM" if args.vm and not args.pytest_args else "pytest " + " ".join(selection)
    print(f"[tcplab soak] {args.runs} runs of {what}; artifacts of failed runs under {out}", flush=True)
    for k in range(1, args.runs + 1):
        folder = out / f"run-{k:03d}"
        if folder.exists():
            shutil.rmtree(folder)
        wall, rc, junit = _run_once(k, folder, args, selection)
        walls.append(wall)
        results = junit_results(junit) if junit.exists() else []
        tests_seen = max(tests_seen, len(results))
        failed = [n for n, o, _ in results if o in ("failed", "error")]
        skipped = [n for n, o, _ in results if o == "skipped"]
        fails.update(failed)
        if rc != 0 or failed or not results:
            bad_runs.append((k, rc, folder))
            why = ", ".join(failed) if failed else f"exit {rc}, no failed test in the JUnit XML"
            print(f"[tcplab soak] run {k}/{args.runs}: FAILED in {wall:.1f} s ({why}); kept {folder}", flush=True)
        else:
            print(f"[tcplab soak] run {k}/{args.runs}: {len(results)} passed"
                  f"{f', {len(skipped)} skipped' if skipped else ''} in {wall:.1f} s", flush=True)
            if not args.keep_all:
                shutil.rmtree(folder)
    print(table(args.runs, tests_seen, walls, fails, bad_runs))
    return 1 if bad_runs else 0


def table(runs: int, tests: int, walls: list[float], fails: Counter, bad_runs: list) -> str:
    rows = [f"soak: {runs} runs of {tests} tests; {len(bad_runs)} failed runs",
            f"wall time per run: min {min(walls):.1f} s, median {statistics.median(walls):.1f} s, "
            f"max {max(walls):.1f} s, total {sum(walls):.0f} s",
            "", f"{'failures':>8}  test"]
    if not fails:
        rows.append(f"{0:>8}  (no test failed)")
    for nodeid, n in fails.most_common():
        rows.append(f"{n:>8}  {nodeid}")
    for k, rc, folder in bad_runs:
        rows.append(f"run {k}: exit {rc}, artifacts in {folder}")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="tcplab soak", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("-N", "--runs", type=int, default=10, help="how many runs in a row (default 10)")
    ap.add_argument("--vm", action="store_true",
                    help="each run boots the QEMU VM (python -m tcplab vm); without pytest arguments, "
                         "CI's netem stage")
    ap.add_argument("--netem", action="store_true", help="with --vm and a selection: the netem backend forced")
    ap.add_argument("--out", default="soak-results", help="folder for the runs' artifacts (default ./soak-results)")
    ap.add_argument("--keep-all", action="store_true", help="keep the folders of green runs too")
    ap.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: the pytest selection")
    a = ap.parse_args(argv)
    a.pytest_args = [x for x in a.pytest_args if x != "--"]
    if a.runs < 1:
        ap.error(f"-N {a.runs}: give at least 1 run")
    if os.geteuid() != 0:
        print("the soak runs labs, which need root: sudo .venv/bin/python -m tcplab soak ...", file=sys.stderr)
        return 4
    return soak(a)
