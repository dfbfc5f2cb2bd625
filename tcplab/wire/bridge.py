"""The wire's names: its bridge, its ports, the hosts' ends, and how a port's state is read.

A module of its own because everything on the wire needs them: the wire (:mod:`.link`), the
impairments (:mod:`.impair`) and the delay line (:mod:`.delayline`), which sits between a port and
the bridge.
"""
from __future__ import annotations

CLIENT, SERVER = "client", "server"
#: each host's MAC (its addresses come from the topology's subnet)
MACS = {CLIENT: "02:00:c6:12:00:01", SERVER: "02:00:c6:12:00:02"}
IFNAME = "eth0"            # each host's end of the wire
WIRE_PORT = {CLIENT: "c", SERVER: "s"}
BRIDGE = "wire"
BR_STATE_FORWARDING = 3
FILLER_ETHERTYPE = b"\x88\xb5"   # IEEE local experimental: no host answers or counts it


def bridge_port_state(ipr, index: int) -> int | None:
    """The bridge port state (BR_STATE_FORWARDING when it forwards) of link ``index``, read with
    ``ipr`` in its namespace's thread; None when the link is no bridge port."""
    info = ipr.get_links(index)[0].get_attr("IFLA_LINKINFO")
    data = info.get_attr("IFLA_INFO_SLAVE_DATA") if info else None
    return data.get_attr("IFLA_BRPORT_STATE") if data else None
