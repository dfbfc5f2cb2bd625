"""``tcplab pkt [packetdrill's flags] SCRIPT...``: run packetdrill scripts against this kernel,
with tcplab's scripted peer (:mod:`tcplab.lab.pkt`) in packetdrill's place.

One script with packetdrill's flags is a drop-in for packetdrill (the kernel's ksft_runner.sh runs
``packetdrill ARGS SCRIPT``): exit 0 when it passes, 1 when it fails, 4 when it uses something
tcplab does not run (kselftest's "skip").  Several scripts, or a folder, run each in both IP
versions unless a script names one, with the kernel runner's arguments, over -n workers: one
line per run, then ``N passed, M failed, K refused``.

Examples::

    sudo tcplab pkt ~/linux/tools/testing/selftests/net/packetdrill/ -n 2
    sudo tcplab pkt --ip_version=ipv6 --mtu=1520 --local_ip=fd3d:0a0b:17d6::1 \\
        --remote_ip=fd3d:fa7b:d17d::1 tcp_basic_client.pkt
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import EXIT_ENV, EXIT_FAILED, EXIT_OK, EXIT_USAGE


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tcplab pkt", description=__doc__.split("\n\n")[0].strip("`"),
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scripts", nargs="+", type=Path, metavar="SCRIPT|FOLDER")
    ap.add_argument("--ip_version", choices=("ipv4", "ipv6"), help="run in this IP version only")
    for name in ("local_ip", "gateway_ip", "netmask_ip", "remote_ip"):
        ap.add_argument(f"--{name}", default="", metavar="ADDR")
    ap.add_argument("--mtu", type=int, default=0)
    ap.add_argument("-D", "--define", action="append", default=[], metavar="NAME=VALUE",
                    help="a definition, in the environment of the script's shell lines")
    ap.add_argument("--tolerance_usecs", type=int, default=None, help="timing tolerance (default 4000)")
    ap.add_argument("--tolerance_percent", type=float, default=None, help="relative tolerance (default 12.5)")
    ap.add_argument("-n", "--workers", type=int, default=1, help="runs at once (processes)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each failed run's whole report")
    ap.add_argument("--tsv", type=Path, metavar="FILE",
                    help="write every run's outcome here: script, ip_version, tcplab (pass/fail/refused), seconds, "
                         "the reason (the columns of the kernel's PACKETDRILL-ON-*.tsv)")
    return ap


def main(argv: list[str]) -> int:
    ap = parser()
    # packetdrill spells its flags --name=value; argparse reads both spellings
    a = ap.parse_args(argv)
    defines = {}
    for d in a.define:
        name, eq, value = d.partition("=")
        if not eq or not name:
            ap.error(f"-D {d}: write NAME=VALUE")
        defines[name] = value
    for s in a.scripts:
        if not s.exists():
            ap.error(f"{s}: no such script or folder")
    from ..lab import where
    access = where.arrange()
    if not access.ok:
        print(f"tcplab pkt: {where.no_lab_here(access)}", file=sys.stderr)
        return EXIT_ENV
    from ..lab.pkt import Config
    from ..lab.pkt_suite import KSFT_DEFINES, run_many, runs_of
    versions = [6 if a.ip_version == "ipv6" else 4] if a.ip_version else None
    runs = runs_of(a.scripts, versions)
    if not runs:
        ap.error("no .pkt script there")
    single = len(a.scripts) == 1 and a.scripts[0].is_file() and a.ip_version is not None

    def config(v: int) -> Config:
        c = Config(ip_version=v, local_ip=a.local_ip, gateway_ip=a.gateway_ip, netmask_ip=a.netmask_ip,
                   remote_ip=a.remote_ip, mtu=a.mtu,
                   defines={**({} if single else KSFT_DEFINES[v]), **defines})
        if a.tolerance_usecs is not None:
            c.tolerance_usecs = a.tolerance_usecs
        if a.tolerance_percent is not None:
            c.tolerance_percent = a.tolerance_percent
        return c
    t0 = time.monotonic()
    counts = {"pass": 0, "fail": 0, "refused": 0}
    rows = []
    for o in run_many([(p, config(v)) for p, v in runs], a.workers):
        counts[o.status] += 1
        rows.append((o.path.name, f"ipv{o.ip_version}", o.status, f"{o.seconds:.2f}",
                     (o.message.splitlines() or [""])[0].replace("\t", " ")))
        head = o.message.splitlines()[0] if o.message else ""
        if single:
            if o.status != "pass":      # as packetdrill says it: SCRIPT:LINE: what
                import re
                print(re.sub(r"^line (\d+): ", rf"{o.path.name}:\1: ", o.message) if o.message.startswith("line ")
                      else f"{o.path.name}: {o.message}", file=sys.stderr)
        else:
            print(f"{o.status.upper():7} {o.path.name} ipv{o.ip_version} {o.seconds:.2f} s"
                  + (f"  {head}" if head else ""), flush=True)
            if a.verbose and o.status == "fail":
                print("\n".join("    " + ln for ln in o.message.splitlines()[1:]))
    if a.tsv:
        a.tsv.write_text("script\tip_version\ttcplab\tseconds\treason\n"
                         + "".join("\t".join(r) + "\n" for r in sorted(rows)))
    if not single:
        print(f"{counts['pass']} passed, {counts['fail']} failed, {counts['refused']} refused "
              f"in {time.monotonic() - t0:.1f} s")
    if counts["fail"]:
        return EXIT_FAILED
    if counts["refused"]:
        return EXIT_ENV if single else EXIT_FAILED
    return EXIT_OK if counts["pass"] else EXIT_USAGE
