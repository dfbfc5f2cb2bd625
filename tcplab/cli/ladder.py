"""``tcplab ladder FILE.pcap [--svg OUT]``: the ladder diagram of every TCP connection in a pcap.

Works on any pcap or pcapng with Ethernet frames (tcplab's, tcpdump's, Wireshark's).  In the
terminal it prints the text ladder (packetdrill-style relative numbers); with ``--svg OUT`` it also
writes an SVG (one file per connection: OUT, then OUT-2.svg, ...).  One capture cannot tell
which segments were lost on the way: labs mark them from the captures at both ends.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tcplab ladder", description=__doc__.split("\n\n")[0].strip("`"),
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("pcap", type=Path)
    ap.add_argument("--svg", type=Path, metavar="OUT", help="also write the diagram as SVG")
    ap.add_argument("--port", type=int, help="only connections to or from this port")
    a = ap.parse_args(argv)
    if not a.pcap.is_file():
        ap.error(f"{a.pcap}: no such file (give a pcap, e.g. a capture-client.pcap that a lab kept)")
    from ..observe.trace import Trace
    try:
        trace = Trace.from_pcap(a.pcap)
    except Exception as exc:  # scapy's reader: not a pcap, truncated...
        print(f"tcplab ladder: cannot read {a.pcap} as a pcap: {exc}", file=sys.stderr)
        return 1
    conns = trace.connections(port=a.port)
    if not conns:
        print(f"tcplab ladder: no TCP connection in {a.pcap}" + (f" on port {a.port}" if a.port else ""),
              file=sys.stderr)
        return 1
    from ..report.ladder import ladder_svg
    for n, conn in enumerate(conns, 1):
        print(conn.ladder())
        print()
        if a.svg:
            out = a.svg if n == 1 else a.svg.with_name(f"{a.svg.stem}-{n}{a.svg.suffix or '.svg'}")
            out.write_text(ladder_svg(conn, title=f"{a.pcap.name}, connection {n}"))
            print(f"written: {out}")
    return 0
