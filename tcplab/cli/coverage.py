"""``python -m tcplab coverage``: run the labs and write the claim -> lab -> result table.

Each lab cites claim IDs in its ``@pytest.mark.lab(...)`` marker; the pytest plugin records them in
the JUnit XML, and this command turns that file into ``docs/coverage.md``.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Iterator

#: The checkable statements of CLAIMS.md, summarised in tcplab's own words.
CLAIMS = {
    "F1": "the six flag bits, printed as tcpdump letters",
    "H1": "segment 1: SYN only, random seq x; client in SYN_SENT",
    "H2": "segment 2: SYN+ACK, ack x+1, own random seq y; server in SYN_RECV",
    "H3": "segment 3: ACK only, seq x+1, ack y+1; both ESTABLISHED",
    "H4": "exactly three segments without loss",
    "H5": "ISNs random per connection, x != y",
    "H6": "tcpdump-style printing, absolute and relative",
    "D1": "seq advances by payload length, ack = next byte, data carries PSH+ACK",
    "C1": "each direction closes on its own (half-close)",
    "C2": "active closer sends FIN seq u, enters FIN_WAIT_1",
    "C3": "peer ACKs u+1 (FIN takes a seq number); CLOSE_WAIT / FIN_WAIT_2",
    "C4": "passive closer sends FIN seq v, enters LAST_ACK",
    "C5": "active closer ACKs v+1, TIME_WAIT; passive closer CLOSED",
    "C6": "either side may close first",
    "Q1": "three segments to open, usually four to close (or three, piggybacked)",
    "Q2": "TIME_WAIT answers a retransmitted FIN after a lost final ACK",
    "R1": "loss is repaired by retransmission with the same seq; backoff",
    "R2": "RST for a SYN to a closed port and for an abortive close",
}
CLAIM_IDS = tuple(CLAIMS)


def _results(junit: Path) -> dict[str, list[tuple[str, str]]]:
    """claim -> [(lab, outcome)] from a JUnit XML written with the tcplab plugin."""
    results: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for case in ET.parse(junit).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if "claims" not in props:
            continue
        outcome = "pass"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "FAIL"
        elif case.find("skipped") is not None:
            outcome = "skip"
        name = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        for claim in props["claims"].split():
            results[claim].append((name, outcome))
    return results


def _verdict(labs: list[tuple[str, str]]) -> tuple[str, bool]:
    passed = sum(o == "pass" for _, o in labs)
    failed = sum(o == "FAIL" for _, o in labs)
    skipped = sum(o == "skip" for _, o in labs)
    text = ("no lab" if not labs else f"{passed} pass" + (f", **{failed} FAIL**" if failed else "")
            + (f", {skipped} skipped" if skipped else ""))
    return text, bool(labs) and passed > 0 and not failed


def table(junit: Path, others: list[tuple[str, Path]] = ()) -> tuple[str, bool]:
    """Markdown for the claim table (one result column per run), and whether every claim has a
    passing lab and no failing one in the first run (this machine's kernel)."""
    main = _results(junit)
    extra = [(label, _results(path)) for label, path in others]
    head = "| claim | statement | labs | this kernel |" + "".join(f" {label} |" for label, _ in extra)
    lines = [head, "|---" * (4 + len(extra)) + "|"]
    ok = True
    for cid, text in CLAIMS.items():
        labs = main.get(cid, [])
        verdict, good = _verdict(labs)
        ok = ok and good
        names = sorted({n.split("[")[0] for n, _ in labs})
        cols = "".join(f" {_verdict(res.get(cid, []))[0]} |" for _, res in extra)
        lines.append(f"| {cid} | {text} | {'<br>'.join(names) or '-'} | {verdict} |{cols}")
    return "\n".join(lines), ok


@contextlib.contextmanager
def labs_junit(given: Path | None, pytest_args: list[str]) -> Iterator[Path]:
    """The JUnit XML to read: ``given``, or a run of the labs (with ``pytest_args``) into a
    temporary file that is removed when the block ends."""
    if given is not None:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="tcplab-labs-") as tmp:
        junit = Path(tmp) / "labs.xml"
        cmd = [sys.executable, "-m", "pytest", "labs/", "-q", f"--junitxml={junit}", *pytest_args]
        print("running:", " ".join(cmd), flush=True)
        subprocess.run(cmd)
        yield junit


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="tcplab coverage", description="Run the labs (or read a JUnit XML) and write the claim -> lab -> result table. Exit 0 when every claim is covered by a passing lab, 1 otherwise.")
    ap.add_argument("--junit", type=Path, help="use this JUnit XML instead of running the labs")
    ap.add_argument("--out", type=Path, default=Path("docs/coverage.md"))
    ap.add_argument("--also", action="append", default=[], metavar="LABEL=JUNIT",
                    help="another run's JUnit XML as an extra result column, e.g. from "
                         "ci/kernel-matrix --junit (repeatable)")
    ap.add_argument("pytest_args", nargs="*", default=["-n", "2"])
    args = ap.parse_args(argv)
    others = []
    for item in args.also:
        label, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            ap.error(f"--also {item!r}: give LABEL=PATH to an existing JUnit XML file")
        others.append((label, Path(path)))
    with labs_junit(args.junit, args.pytest_args) as junit:
        md, ok = table(junit, others)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Claim coverage\n\nGenerated by `sudo .venv/bin/python -m tcplab coverage` on kernel "
        f"{platform.release()} (impairment backend {os.environ.get('TCPLAB_BACKEND', 'auto')}). "
        "Each claim of CLAIMS.md, the labs that cite it, and their results (IPv4 and IPv6 runs count "
        "separately)."
        + ("" if not others else " Further columns come from other runs' JUnit XML (`--also LABEL=FILE`), e.g. "
           "`sudo ci/kernel-matrix --netem --junit vm.xml -- labs/ -n 2`: the whole catalogue on Debian's "
           "stock kernel in QEMU with the netem backend forced.")
        + "\n\n" + md + "\n")
    print(md)
    print(f"\nwritten to {args.out}; every claim covered by a passing lab: {'yes' if ok else 'NO'}")
    return 0 if ok else 1
