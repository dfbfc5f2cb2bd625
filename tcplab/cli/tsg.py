"""``tcplab tsg FILE.pcap [--svg OUT]``: the time-sequence graph of a pcap's connections.

Time across, relative sequence number up, as tcptrace and Wireshark's Stevens graph draw it:
data segments (retransmissions in red), the receiver's ACK and window lines, SACK blocks,
duplicate ACKs and zero windows, marked with Wireshark's definitions (those of ``tcplab
analyze``).  One SVG per connection, for the side that sent more data (``--sender`` to choose):
OUT, then OUT-2.svg, ...  Without ``--svg`` the graph goes beside the pcap, as FILE-tsg.svg.  Each loss episode gets a
panel of its own under the whole connection.  ``--html PAGE`` also writes the graph as a page
to zoom and pan (Plotly, inside the page: it opens offline).

For a tcplab capture (``NAME-client.pcap``), the kernel's sender record that the capture wrote
beside it (``NAME-sender.json``) adds a panel of cwnd and ssthresh underneath; ``--kernel`` names
another record.
"""
from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from . import pcap_command, read_capture
    ap = pcap_command("tsg", __doc__)
    ap.add_argument("--svg", type=Path, metavar="OUT", help="where to write the graph (default: beside the pcap)")
    ap.add_argument("--html", type=Path, metavar="PAGE",
                    help="also write the graph as a page to zoom and pan (offline: Plotly inside the page)")
    ap.add_argument("--port", type=int, help="only connections to or from this port")
    ap.add_argument("--sender", choices=("client", "server"), help="whose data to draw (default: who sent more)")
    ap.add_argument("--kernel", type=Path, metavar="RECORD",
                    help="the capture's sender record (default: NAME-sender.json beside NAME-HOST.pcap, if any)")
    a = ap.parse_args(argv)
    from ..observe.analysis import analyse
    from ..observe.fastparse import read_pcap
    from ..report.tsg import bigger_sender, tsg_html, tsg_svg
    segments = read_capture(ap, a, read_pcap)
    if segments is None:
        return 1
    conns = [c for c in analyse(segments) if a.port is None or a.port in (c.client[1], c.server[1])]
    if not conns:
        print(f"tcplab tsg: no TCP connection in {a.pcap}" + (f" on port {a.port}" if a.port else ""),
              file=sys.stderr)
        return 1
    samples = _sender_record(a)
    if samples is False:
        return 1
    base = a.svg or a.pcap.with_name(f"{a.pcap.stem}-tsg.svg")
    for n, conn in enumerate(conns, 1):
        sender = a.sender or bigger_sender(conn.segments, conn.client)
        out = base if n == 1 else base.with_name(f"{base.stem}-{n}{base.suffix or '.svg'}")
        kernel = None
        if samples:
            from ..observe.sender import socket_record
            me, peer = (conn.client, conn.server) if sender == "client" else (conn.server, conn.client)
            kernel = socket_record(*samples, me, peer) or None
        page = None
        if a.html:
            page = a.html if n == 1 else a.html.with_name(f"{a.html.stem}-{n}{a.html.suffix or '.html'}")
        try:
            out.write_text(tsg_svg(conn, sender, kernel=kernel))
            if page is not None:
                page.write_text(tsg_html(conn, sender, kernel=kernel))
        except OSError as exc:
            print(f"tcplab tsg: cannot write {exc.filename or out}: {exc.strerror}", file=sys.stderr)
            return 1
        if page is not None:
            print(f"{page}: the same graph to zoom and pan (opens offline)")
        print(f"{out}: {sender}'s data" + (f", cwnd and ssthresh from {kernel.source}" if kernel else ""))
    return 0


def _sender_record(a):
    """(samples, source) of the sender record to draw, None without one, False after an error."""
    from ..errors import TcplabError
    from ..observe.sender import load
    path = a.kernel
    if path is None:
        stem, _, _host = a.pcap.stem.rpartition("-")
        guess = a.pcap.with_name(f"{stem}-sender.json")
        if not stem or not guess.is_file():
            return None
        path = guess
    try:
        return load(path)
    except TcplabError as exc:
        print(f"tcplab tsg: {exc}", file=sys.stderr)
        return False

