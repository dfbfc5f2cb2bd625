"""``tcplab ladder FILE.pcap [--svg OUT]``: the ladder diagram of every TCP connection in a pcap.

Works on any pcap or pcapng with Ethernet frames (tcplab's, tcpdump's, Wireshark's).  In the
terminal it prints the text ladder (packetdrill-style relative numbers); with ``--svg OUT`` it also
writes an SVG (one file per connection: OUT, then OUT-2.svg, ...).  One capture cannot tell
which segments were lost on the way: labs mark them from the captures at both ends.
"""
from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from . import pcap_command, read_capture
    ap = pcap_command("ladder", __doc__)
    ap.add_argument("--svg", type=Path, metavar="OUT", help="also write the diagram as SVG")
    ap.add_argument("--port", type=int, help="only connections to or from this port")
    a = ap.parse_args(argv)
    from ..observe.trace import Trace
    trace = read_capture(ap, a, Trace.from_pcap)
    if trace is None:
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
