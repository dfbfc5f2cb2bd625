#!/usr/bin/env python3
"""The table of docs/packetdrill.md: packetdrill's outcome of each run against tcplab pkt's.

Reads packetdrill's TSV (script, ip_version, packetdrill, seconds, last line: the kernel folder's
PACKETDRILL-ON-*.tsv, or bench/pkt.py --tsv) and tcplab's (tcplab pkt --tsv), prints Markdown: runs
by outcome under each, the refusals by feature, every run where they differ.
Usage: python bench/pkt_table.py PACKETDRILL.tsv TCPLAB.tsv
"""
import collections
import csv
import re
import sys


def read(path):
    rows = list(csv.reader(open(path), delimiter="\t"))
    return {(r[0], r[1]): (r[2], r[4] if len(r) > 4 else "") for r in rows[1:]}


def feature(reason: str) -> str:
    m = re.search(r": (.*?) (?:is|are) not (?:supported|known)", reason)
    return m.group(1) if m else reason


def main() -> int:
    pd, ours = read(sys.argv[1]), read(sys.argv[2])
    keys = sorted(pd)
    table = collections.Counter((pd[k][0], ours.get(k, ("missing", ""))[0]) for k in keys)
    by_version = collections.Counter((k[1], pd[k][0], ours.get(k, ("missing", ""))[0]) for k in keys)
    print("| packetdrill \\ tcplab pkt | pass | fail | refused |")
    print("|---|---|---|---|")
    for p in ("pass", "fail"):
        print(f"| {p} ({sum(v for (a, _), v in table.items() if a == p)}) | "
              + " | ".join(str(table[(p, o)]) for o in ("pass", "fail", "refused")) + " |")
    print()
    for v in ("ipv4", "ipv6"):
        cells = ", ".join(f"{p}/{o}: {by_version[(v, p, o)]}" for p in ("pass", "fail")
                          for o in ("pass", "fail", "refused") if by_version[(v, p, o)])
        print(f"- {v}: {cells}")
    refused = collections.Counter(feature(ours[k][1]) for k in keys if ours.get(k, ("",))[0] == "refused"
                                  and pd[k][0] == "pass")
    print("\nRuns packetdrill passes that tcplab refuses, by feature: "
          + ", ".join(f"{f} {n}" for f, n in refused.most_common()) + ".")
    differ = [k for k in keys if ours.get(k, ("",))[0] in ("pass", "fail") and ours[k][0] != pd[k][0]]
    print(f"\nRuns where they differ ({len(differ)}):\n")
    for k in differ:
        print(f"- `{k[0]}` {k[1]}: packetdrill {pd[k][0]}, tcplab {ours[k][0]}"
              + (f": {ours[k][1]}" if ours[k][1] else f" (packetdrill: {pd[k][1][:120]})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
