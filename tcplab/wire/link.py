"""The wire: a bridge in a namespace of its own, one veth port towards each host.

::

    client eth0 -- c (bridge "wire") s -- server eth0

It is a pure layer-2 path: no addresses, no IPv6, so it never sends a frame of its own that an
impairment could count or drop.  Everything that happens *on* the link happens here: the
impairments (:mod:`tcplab.wire.impair`), the user-space delay line where the kernel has no netem
(:mod:`tcplab.wire.delayline`), and the token buckets that make two segments cross
(:meth:`Wire.cross_next`).  The hosts at its ends are the lab layer's (:mod:`tcplab.lab.topology`);
the wire knows of them only their name, MAC and namespace.
"""
from __future__ import annotations

import errno
import socket
from typing import Any

from ..errors import ConfigError, TcplabError, Unsupported, check_int
from ..errors import hide_config_errors as __tracebackhide__  # noqa: F401  (pytest)
from .bridge import BRIDGE, FILLER_ETHERTYPE, IFNAME, WIRE_PORT, bridge_port_state
from .netns import Namespace, ipr as _ipr

def _send_fillers(ifname: str, src_mac: str, dst_mac: str, sizes=(1514, 100)) -> None:
    """Frames that empty a wire port's token bucket (Wire.cross_next)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        s.bind((ifname, 0))
        head = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + FILLER_ETHERTYPE
        for size in sizes:
            s.send(head + b"tcplab-cross-next".ljust(size - len(head), b"\0"))
    finally:
        s.close()


class Wire:
    """The bridge between the hosts, in namespace ``ns``.

    ``seed`` is the default seed of random impairments (None: a fresh one per :meth:`impair`,
    recorded there), ``backend`` the default impairment backend (None: ``auto``)."""

    def __init__(self, ns: Namespace, *, seed: int | None = None, backend: str | None = None):
        self.ns = ns
        self.seed = seed
        self.backend = backend
        #: port name (CLIENT, SERVER) -> link index in the wire namespace
        self.ports: dict[str, int] = {}
        #: what :meth:`impair` applied (None until then)
        self.impairments = None
        self._tbf = False

    def run(self, fn, *args: Any, **kw: Any):
        """Run ``fn`` in the wire's namespace."""
        return self.ns.run(fn, *args, **kw)

    # -- building ----------------------------------------------------------------------------
    def build(self, ends: dict[str, tuple[str, int]]) -> None:
        """Make the bridge and one veth per host: ``ends`` maps CLIENT/SERVER to (MAC, namespace
        fd) of the host, whose end of the veth arrives there as ``eth0``."""
        self.ns.run(self._build, ends)

    def _build(self, ends: dict[str, tuple[str, int]]) -> None:
        for key in ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"):
            self.ns.sysctl(key, 1)
        self.ns.sysctl("net.ipv4.igmp_link_local_mcast_reports", 0)
        ipr = _ipr(self.ns)
        ipr.link("set", index=1, state="up")
        # One request per device: the bridge created up, each veth created with its peer in the
        # host (named, with its MAC), already enslaved to the bridge and up.
        ipr.link("add", ifname=BRIDGE, kind="bridge", br_stp_state=0, br_forward_delay=0, state="up")
        (br,) = ipr.link_lookup(ifname=BRIDGE)
        for name, (mac, ns_fd) in ends.items():
            ipr.link("add", ifname=WIRE_PORT[name], kind="veth", master=br, state="up",
                     peer={"ifname": IFNAME, "address": mac, "net_ns_fd": ns_fd})
        index = {link.get_attr("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}
        self.ports = {name: index[p] for name, p in WIRE_PORT.items() if name in ends}

    def port_states(self) -> dict[str, int | None]:
        """Each port's bridge state (BR_STATE_FORWARDING when it forwards)."""
        def read():
            i = _ipr(self.ns)
            return {name: bridge_port_state(i, idx) for name, idx in self.ports.items()}
        return self.ns.run(read)

    # -- impairments ---------------------------------------------------------------------------
    def impair(self, *, c2s=None, s2c=None, both=None, drops=(), backend: str | None = None,
               seed: int | None = None):
        """Impair the wire: ``c2s``/``s2c`` (or ``both``) are :class:`tcplab.Netem` specs,
        ``drops`` a list of :class:`tcplab.Drop`.  Returns the applied
        :class:`tcplab.wire.impair.WireImpairments` (backend, counters, ``seed``).  Can be called
        once.  ``seed`` (default: the wire's, else a fresh one) fixes the random loss pattern on
        the nftables backend; ``backend`` (default: the wire's, else ``auto``) chooses netem or
        nftables."""
        from .impair import Drop, Netem, WireImpairments, chosen_backend, new_seed
        if self.impairments is not None:
            raise ConfigError("the wire is already impaired: give every impairment in one impair() call")
        if both is not None:
            if c2s is not None or s2c is not None:
                raise ConfigError("give either both= or c2s=/s2c=, not both")
            c2s = s2c = both
        for name, spec in (("c2s", c2s), ("s2c", s2c)):
            if spec is not None and not isinstance(spec, Netem):
                raise ConfigError(f"{name}= takes a tcplab.Netem(...), not {type(spec).__name__}")
        drops = list(drops)
        for d in drops:
            if not isinstance(d, Drop):
                raise ConfigError(f"drops= takes tcplab.Drop(...) items, not {type(d).__name__}")
        seed = seed if seed is not None else self.seed
        if seed is not None:
            check_int("seed", seed, 0, 2**63 - 1, "a whole number from 0 (e.g. seed=1234)")
        imp = WireImpairments(self, chosen_backend(backend or self.backend),
                              seed if seed is not None else new_seed())
        imp.apply(c2s, s2c, drops)
        self.impairments = imp
        return imp

    # -- holding segments back -------------------------------------------------------------------
    def cross_next(self, hosts, hold: float = 0.5) -> None:
        """Hold the next segment each way for about ``hold`` seconds; see
        :meth:`tcplab.Topology.cross_next`.  ``hosts`` are the two ends (``ns``, ``ifname``,
        ``mac``, ``peer``), which send the filler frames."""
        if not 0.05 <= hold <= 0.6:
            raise ConfigError(f"hold={hold!r}: seconds from 0.05 to 0.6 (below the 1 s SYN timer)")
        filler = max(100, int(hold * 2000) + 100)
        if not self._tbf:
            def add():
                i = _ipr(self.ns)
                for idx in self.ports.values():
                    i.tc("add", "tbf", idx, 0x10000, rate="16kbit", burst=1600, limit=100000)
            from pyroute2.netlink.exceptions import NetlinkError
            try:
                self.ns.run(add)
            except NetlinkError as exc:
                if exc.code not in (errno.ENOENT, errno.EOPNOTSUPP):   # anything but "no such qdisc kind"
                    raise
                raise Unsupported(f"the kernel refused a tbf qdisc ({exc}): cross_next() needs sch_tbf") from None
            self._tbf = True
        # Fill each port's queue: send filler frames until one waits in the queue.  The bucket's
        # level depends on how long the port was idle, and it refills while this runs, so it is
        # checked, not assumed.  The last filler waits about ``hold`` (its size at 2000 bytes/s,
        # less what the bucket still held), below the 1 s SYN and SYN-ACK timers.
        sizes = {h.name: (1514, filler) for h in hosts}
        for _ in range(50):
            for h in hosts:
                if sizes[h.name]:
                    h.ns.run(_send_fillers, h.ifname, h.mac, h.peer.mac, sizes[h.name])
            queued = self.ns.run(self._tbf_queues)
            # the client's frames leave through the server's port, and the other way round
            sizes = {h.name: () if queued[self.ports[h.peer.name]] else (filler,) for h in hosts}
            if not any(sizes.values()):
                return
        raise TcplabError("cross_next: the wire's token buckets never queued a filler frame")

    def held(self) -> int:
        """How many frames the wire holds back right now (after :meth:`cross_next`; else 0)."""
        if not self._tbf:
            return 0
        return sum(self.ns.run(self._tbf_queues).values())

    def _tbf_queues(self) -> dict[int, int]:
        return {m["index"]: m.get_attr("TCA_STATS2").get_attr("TCA_STATS_QUEUE")["qlen"]
                for m in _ipr(self.ns).get_qdiscs() if m.get_attr("TCA_KIND") == "tbf"}

    def close(self) -> list[str]:
        """Remove the impairments (their relay, their counters' last read); returns clean-up errors.
        The bridge and ports go with the namespace."""
        return self.impairments.close() if self.impairments is not None else []
