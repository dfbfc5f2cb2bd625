"""``python -m tcplab coverage``: run the labs and write the claim -> lab -> result table.

Each lab cites claim IDs in its ``@pytest.mark.lab(...)`` marker; the pytest plugin records them in
the JUnit XML, and this command turns that file into ``docs/coverage.md``.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Iterator

#: the one list of claims, in the checkout (a course's own list can be given with --claims)
CLAIMS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "claims.md"
CLAIM_LINE = re.compile(r"^- \*\*([A-Z]\d+)\*\* \*([^*]+?)\.?\*")


def load_claims(page: Path = CLAIMS_PAGE) -> dict[str, str]:
    """ID -> short form, from the page's ``- **ID** *short form.* ...`` lines, in their order."""
    try:
        text = page.read_text()
    except OSError as exc:
        raise SystemExit(f"tcplab coverage: cannot read the claims page {page}: {exc.strerror}; give it with "
                         "--claims PATH") from None
    claims = {m.group(1): m.group(2) for m in map(CLAIM_LINE.match, text.splitlines()) if m}
    if not claims:
        raise SystemExit(f"tcplab coverage: {page} lists no claims (lines like  - **H1** *short form.* text)")
    return claims


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
        cls = case.get("classname", "")
        # a test module's last dotted part; a script lab (labs/x.pkt) keeps its file name
        label = ".".join(cls.split(".")[-2:]) if cls.endswith(".pkt") else cls.split(".")[-1]
        name = f"{label}::{case.get('name')}"
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


def table(junit: Path, others: list[tuple[str, Path]] = (), claims: dict[str, str] | None = None) -> tuple[str, bool]:
    """Markdown for the claim table (one result column per run), and whether every claim has a
    passing lab and no failing one in the first run (this machine's kernel)."""
    claims = load_claims() if claims is None else claims
    main = _results(junit)
    extra = [(label, _results(path)) for label, path in others]
    head = "| claim | statement | labs | this kernel |" + "".join(f" {label} |" for label, _ in extra)
    lines = [head, "|---" * (4 + len(extra)) + "|"]
    ok = True
    for cid, text in claims.items():
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
    ap.add_argument("--claims", type=Path, default=CLAIMS_PAGE, help="the list of claims (default: docs/claims.md)")
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
        md, ok = table(junit, others, load_claims(args.claims))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Claim coverage\n\nGenerated by `sudo .venv/bin/python -m tcplab coverage` on kernel "
        f"{platform.release()} (impairment backend {os.environ.get('TCPLAB_BACKEND', 'auto')}). "
        "Each claim of [claims.md](claims.md), the labs that cite it, and their results (IPv4 and IPv6 runs count "
        "separately)."
        + ("" if not others else " Further columns come from other runs' JUnit XML (`--also LABEL=FILE`), e.g. "
           "`sudo ci/kernel-matrix --netem --junit vm.xml -- labs/ -n 2`: the whole catalogue on Debian's "
           "stock kernel in QEMU with the netem backend forced.")
        + "\n\n" + md + "\n")
    print(md)
    print(f"\nwritten to {args.out}; every claim covered by a passing lab: {'yes' if ok else 'NO'}")
    return 0 if ok else 1
