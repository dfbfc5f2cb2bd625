"""``tcplab analyze FILE.pcap [--json]``: Wireshark's TCP analysis counts, per connection.

Reads any classic pcap (tcplab's, tcpdump's; pcapng through Scapy, slower) and counts, for each
connection, the segments Wireshark would flag: retransmissions (fast ones included), fast
retransmissions, spurious retransmissions, out-of-order segments, duplicate ACKs, zero windows,
zero-window probes, keep-alives, window updates, with Wireshark's own definitions
(``tcplab.observe.analysis``).  Linux's zero-window probe is a keep-alive to Wireshark; the
keep-alives sent into a zero window are also counted as ``linux_zero_window_probes``.
``--json`` prints ``{"connections": [{"client": ..., "server": ..., <counts>}]}``.
"""
from __future__ import annotations

import json
import sys


def main(argv: list[str] | None = None) -> int:
    from . import pcap_command, read_capture
    ap = pcap_command("analyze", __doc__)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = ap.parse_args(argv)
    from ..observe.analysis import COUNTS, analyse
    from ..observe.fastparse import pcap_headers
    segments = read_capture(ap, a, pcap_headers)
    if segments is None:
        return 1
    conns = [c.as_dict() for c in analyse(segments)]
    if a.json:
        print(json.dumps({"connections": conns}, indent=1))
        return 0
    if not conns:
        print(f"tcplab analyze: no TCP connection in {a.pcap}", file=sys.stderr)
        return 1
    cols = ["client", "server", *COUNTS]
    heads = [c.replace("_", " ") for c in cols]
    widths = [max(len(h), *(len(str(c[k])) for c in conns)) for h, k in zip(heads, cols)]
    print("  ".join(h.rjust(w) for h, w in zip(heads, widths)))
    for c in conns:
        print("  ".join(str(c[k]).rjust(w) for k, w in zip(cols, widths)))
    return 0
