"""Two hosts on a wire: client and server namespaces joined through a middle "wire" namespace.

::

    client ns                 wire ns                     server ns
    eth0 02:00:c6:12:00:01 -- c (bridge "wire") s -- eth0 02:00:c6:12:00:02
    198.18.0.1/24                                         198.18.0.2/24
    2001:db8::1/64                                        2001:db8::2/64

Each live topology on the machine has a subnet of its own (the first 198.18.0.0/24 and
2001:db8::/64, the next 198.18.1.0/24 and 2001:db8:1::/64, ...; see :class:`Subnet`), so its
sockets can be told apart by address in the kernel's machine-wide records (the state-change
tracepoint has no namespace).

Loss, delay and targeted drops live in the wire namespace (see :mod:`tcplab.wire.impair`), so they
behave like a real lossy link: the sender's TCP retransmits, the sender's capture shows what was
sent and the receiver's capture shows what arrived.  The hosts get static neighbour entries (no ARP
or ND in a trace), ``lo`` up, offloads off (real segments, real checksums) and pinned TCP sysctls.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..errors import ConfigError, TcplabError, check_int
from ..wait import until
from ..errors import hide_config_errors as __tracebackhide__  # noqa: F401  (pytest)
from .. import settings
from ..wire.bridge import BR_STATE_FORWARDING, CLIENT, IFNAME, MACS, SERVER
from ..wire.link import Wire
from ..wire.netns import Namespace, ipr as _ipr

HOST_ID = {CLIENT: 1, SERVER: 2}
SUBNETS = 512          # 198.18.0.0/24 ... 198.19.255.0/24: the whole of 198.18.0.0/15


class Subnet:
    """The subnet of one live topology, unique on this machine while the topology lives.

    Held as a :class:`tcplab.claim.Claim` (freed by the kernel when the holder dies, no file).
    The lowest free index is taken, so a lone run always gets 198.18.0.0/24."""

    def __init__(self):
        from ..claim import Claim
        self._claim = Claim("subnet", SUBNETS)
        if self._claim.number is None:
            raise TcplabError(f"all {SUBNETS} tcplab subnets are in use on this machine: too many topologies at once")
        self.index = self._claim.number

    def addr(self, name: str, family: int) -> str:
        n = self.index
        return f"198.{18 + n // 256}.{n % 256}.{HOST_ID[name]}" if family == 4 else \
            (f"2001:db8:{n:x}::{HOST_ID[name]}" if n else f"2001:db8::{HOST_ID[name]}")

    def release(self) -> None:
        self._claim.release()
PREFIX = {4: 24, 6: 64}
NUD_PERMANENT = 0x80
RTN_LOCAL = 2
IFA_F_NODAD = 0x02
#: Offloads that make captures lie (63 KB "segments", unfilled checksums).
OFFLOADS_OFF = ("tx-checksum-ip-generic", "tx-tcp-segmentation", "tx-tcp6-segmentation",
                "tx-generic-segmentation", "tx-scatter-gather", "rx-gro")


def family_of(family: Any) -> int:
    """4 or 6, as the ``family`` fixture gives it; anything else is refused with the fix."""
    if family in (4, 6) and not isinstance(family, bool):
        return family
    raise ConfigError(f"family={family!r} is not an IP family: use 4 or 6 (the family fixture's values)")


def af(family: int) -> int:
    return socket.AF_INET if family_of(family) == 4 else socket.AF_INET6


_feature_bits: dict[str, int] = {}
_feature_lock = threading.Lock()
ETHTOOL_GFEATURES, ETHTOOL_SFEATURES, SIOCETHTOOL = 0x3A, 0x3B, 0x8946


def _ethtool(ifname: str, buf: bytearray) -> None:
    """One SIOCETHTOOL ioctl on ``ifname`` with ``buf`` as its (in/out) argument."""
    import array
    import fcntl
    arr = array.array("B", buf)
    ifreq = struct.pack("16sQ16x", ifname.encode(), arr.buffer_info()[0])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCETHTOOL, ifreq)
    buf[:] = arr.tobytes()


def _disable_offloads(ifname: str) -> None:
    """Turn the offloads that make captures lie off with one ETHTOOL_SFEATURES ioctl, and check
    with one ETHTOOL_GFEATURES that they are off.  The feature bit numbers are the kernel's, looked
    up once per process."""
    # Both hosts set up their links in parallel threads: one looks the bits up, the other waits
    # (a dict filled while the other thread read it gave that one too few words: EINVAL, seen on
    # Debian 6.1 under QEMU).
    with _feature_lock:
        if not _feature_bits:
            from pyroute2.ethtool.ioctl import IoctlEthtool
            eth = IoctlEthtool(ifname)
            try:
                found = {n: i for i, n in enumerate(eth.get_stringset(4))}  # ETH_SS_FEATURES
            finally:
                eth.close()
            _feature_bits.update(found)
    words = (max(_feature_bits.values()) + 32) // 32
    bits = [_feature_bits[n] for n in OFFLOADS_OFF if n in _feature_bits]
    valid = [0] * words
    for b in bits:
        valid[b // 32] |= 1 << (b % 32)
    _ethtool(ifname, bytearray(struct.pack("II", ETHTOOL_SFEATURES, words)
                               + b"".join(struct.pack("II", v, 0) for v in valid)))
    got = bytearray(struct.pack("II", ETHTOOL_GFEATURES, words) + bytes(16 * words))
    _ethtool(ifname, got)
    active = [struct.unpack_from("IIII", got, 8 + 16 * w)[2] for w in range(words)]
    still = [n for n in OFFLOADS_OFF[:5] if n in _feature_bits
             and active[_feature_bits[n] // 32] >> (_feature_bits[n] % 32) & 1]
    if still:
        raise TcplabError(f"could not turn off offloads {still} on {ifname}: captures would show "
                          "merged segments and bad checksums")


def _read_counters() -> dict[str, int]:
    # thread-self: /proc/net (self/net) shows the namespace of the process's main thread, not of
    # the host's thread this runs in
    out: dict[str, int] = {}
    for name in ("netstat", "snmp"):
        with open(f"/proc/thread-self/net/{name}") as f:
            lines = f.read().splitlines()
        for head, values in zip(lines[::2], lines[1::2]):
            prefix, keys = head.split(":", 1)
            if prefix in ("TcpExt", "Tcp"):
                out.update({k: int(v) for k, v in zip(keys.split(), values.split(":", 1)[1].split())})
    return out


class Host:
    """One end of the link: a namespace with ``eth0``, its addresses, sockets and programs."""

    def __init__(self, topo: "Topology", name: str, ns: Namespace):
        self.topo = topo
        self.name = name
        self.ns = ns
        self.mac = MACS[name]
        self.ifname = IFNAME
        self._closables: list[Any] = []
        self._diag = None
        self._quickack = False
        self._rto_min = settings.RTO_MIN_MS

    # -- addresses ---------------------------------------------------------------------
    def addr(self, family: Any = 4) -> str:
        return self.topo.subnet.addr(self.name, family_of(family))

    def peer_addrs(self) -> dict:
        other = SERVER if self.name == CLIENT else CLIENT
        return {4: self.topo.subnet.addr(other, 4), 6: self.topo.subnet.addr(other, 6), "mac": MACS[other]}

    @property
    def peer(self) -> "Host":
        return self.topo.server if self.name == CLIENT else self.topo.client

    # -- set-up (runs in the namespace thread) -----------------------------------------
    def _pin_sysctls(self) -> None:
        for knob in settings.TCP_KNOBS + settings.IPV6_KNOBS:
            path = "/proc/sys/" + knob.key.replace(".", "/")
            if not os.path.exists(path):
                if knob.optional:
                    continue
                raise TcplabError(f"sysctl {knob.key} is missing in the namespace ({knob.why})")
            with open(path, "w") as f:
                f.write(knob.value)

    def _configure_link(self) -> None:
        ipr = _ipr(self.ns)
        ipr.link("set", index=1, state="up")
        (idx,) = ipr.link_lookup(ifname=IFNAME)
        self.ifindex = idx
        _disable_offloads(IFNAME)
        for fam in (4, 6):
            ipr.addr("add", index=idx, address=self.addr(fam), prefixlen=PREFIX[fam],
                     **({"flags": IFA_F_NODAD} if fam == 6 else {}))
        ipr.link("set", index=idx, state="up")
        peer = self.peer_addrs()
        for fam in (4, 6):
            ipr.neigh("add", dst=peer[fam], lladdr=peer["mac"], ifindex=idx, state=NUD_PERMANENT)
        self._set_peer_routes()

    def _link_ready(self) -> bool:
        """Runs in the host's thread: eth0 operationally up and the IPv6 address a local route."""
        ipr = _ipr(self.ns)
        if ipr.get_links(self.ifindex)[0].get_attr("IFLA_OPERSTATE") != "UP":
            return False
        try:
            route = ipr.route("get", dst=self.addr(6), family=socket.AF_INET6)[0]
        except Exception:  # no route yet (ENETUNREACH)
            return False
        return route["type"] == RTN_LOCAL

    def _set_peer_routes(self) -> None:
        ipr = _ipr(self.ns)
        peer = self.peer_addrs()
        metrics = {"rto_min": self._rto_min, "lock": settings.RTAX_LOCK_RTO_MIN}
        if self._quickack:
            metrics["quickack"] = 1
        for fam in (4, 6):
            # prefsrc: tools that read the routing table themselves (Scapy) pick the host's own
            # address as the source, as the kernel does
            ipr.route("replace", dst=f"{peer[fam]}/{32 if fam == 4 else 128}", oif=self.ifindex,
                      prefsrc=self.addr(fam), metrics=metrics, family=af(fam))

    # -- knobs a lab may turn ------------------------------------------------------------
    def sysctl(self, key: str, value: Any = None) -> str:
        """Read or set a sysctl inside this host (never in the root namespace)."""
        if not key.startswith("net."):
            raise ConfigError(f"sysctl {key!r}: only per-namespace net.* sysctls can be set from a lab")
        return self.ns.sysctl(key, value)

    def quickack(self, on: bool = True) -> None:
        """Set the ``quickack`` route metric towards the peer: ACKs go out at once instead of being
        delayed, so an ACK is never merged with a FIN that follows it shortly (4-segment close)."""
        self._quickack = bool(on)
        self.ns.run(self._set_peer_routes)

    def rto_min(self, ms: int) -> None:
        """Set the retransmission timeout floor towards the peer (locked route metric ``rto_min``;
        tcplab's default is 20 ms, Linux's own is 200 ms)."""
        self._rto_min = check_int("rto_min", ms, 1, 120_000, "milliseconds from 1 to 120000")
        self.ns.run(self._set_peer_routes)

    # -- sockets, programs, state --------------------------------------------------------
    def socket(self, family: Any = 4, type: int = socket.SOCK_STREAM) -> socket.socket:
        """A kernel socket created inside this host's namespace."""
        s = self.ns.run(socket.socket, af(family), type)
        self._closables.append(s)
        return s

    def listen(self, port: int = 0, family: Any = 4, backlog: int = 16):
        from .sockets import Listener
        return Listener(self, port=port, family=family_of(family), backlog=backlog)

    def connect(self, address: tuple, *, timeout: float = 5.0, wait: bool = True, port: int = 0):
        """Connect to ``address`` (ip, port).  With ``wait=False`` the SYN is sent and the call
        returns at once (the socket is then in SYN_SENT until the handshake completes)."""
        from .sockets import Conn
        return Conn._open(self, address, timeout=timeout, wait=wait, port=port)

    def popen(self, argv: list[str], **kw: Any):
        """Start an external program inside this host; see :class:`tcplab.lab.process.Program`."""
        from .process import Program
        prog = Program.start(self, argv, **kw)
        self._closables.append(prog)
        return prog

    def tcp_sockets(self):
        """All TCP sockets in this host, read from the kernel with sock_diag."""
        from .diag import list_tcp
        return self.ns.run(list_tcp, self)

    def counters(self) -> dict[str, int]:
        """This host's TCP counters, as ``nstat`` shows them: ``TcpExt`` (``TCPFastRetrans``,
        ``TCPTimeouts``, ``TCPLossProbes``, ``TCPSackRecovery`` ...) and ``Tcp`` (``RetransSegs``
        ...) of /proc/net/netstat and /proc/net/snmp.  Each host is a fresh namespace, so they
        count this lab's connections only: the kernel's own word on which recovery happened."""
        return self.ns.run(_read_counters)

    def wait_listening(self, port: int, family: Any = 4, timeout: float = 60.0, program=None) -> None:
        """Wait until something listens on ``port`` here.  The deadline is generous because a
        program's start-up (an interpreter importing its modules) can take seconds on an emulated
        CPU (measured: over 5 s for ``python -m http.server`` in the QEMU/TCG VM); the wait ends as
        soon as the listener exists, or at once if ``program`` exits first."""
        from .diag import wait_listening
        wait_listening(self, port, family_of(family), timeout, program)

    def _close(self) -> list[str]:
        errors = []
        for c in reversed(self._closables):
            try:
                c.close()
            except Exception as exc:
                errors.append(f"{self.name}: closing {c!r}: {exc!r}")
        self._closables.clear()
        return errors

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.addr(4)} {self.addr(6)}>"


class Topology:
    """Client and server hosts joined by an impairable wire.  Use as a context manager.

    ``workdir`` is where captures and program output go, and where they stay.  Without one, a
    temporary folder of the topology's own holds them and is removed by :meth:`close`: pass a
    ``workdir`` to keep the pcaps.
    """

    def __init__(self, *, workdir: str | os.PathLike | None = None, seed: int | None = None,
                 backend: str | None = None):
        self.captures: list = []
        self.pollers: list = []        # StatePoller objects started on this topology's hosts
        self._namespaces: list[Namespace] = []
        self.subnet = Subnet()
        self._own_workdir = workdir is None
        try:
            self.workdir = Path(tempfile.mkdtemp(prefix="tcplab-")) if workdir is None else Path(workdir)
            self.workdir.mkdir(parents=True, exist_ok=True)
            # Three threads unshare in parallel.
            c_ns, s_ns, w_ns = (Namespace(n) for n in (CLIENT, SERVER, "wire"))
            self._namespaces = [c_ns, s_ns, w_ns]
            self.client = Host(self, CLIENT, c_ns)
            self.server = Host(self, SERVER, s_ns)
            #: the link between them (:class:`tcplab.wire.link.Wire`): impairments, held segments
            self.wire = Wire(w_ns, seed=seed, backend=backend)
            # conf.default must be set before eth0 arrives in each host.
            for pin in [h.ns.submit(h._pin_sysctls) for h in (self.client, self.server)]:
                pin.result()
            self.wire.build({h.name: (h.mac, h.ns.fd) for h in self})
            jobs = [h.ns.submit(h._configure_link) for h in (self.client, self.server)]
            for j in jobs:
                j.result()
            self._wait_forwarding()
        except BaseException:
            self.close()
            raise

    def _wait_forwarding(self, timeout: float = 10.0) -> None:
        """Wait until the wire carries traffic: the bridge forwards on both ports, and each host's
        eth0 is operationally up with its IPv6 address installed as a local route.  The kernel does
        these steps asynchronously after the links are set up (linkwatch, then IPv6 addrconf); a
        segment sent before is dropped, by the bridge or by the receiving host's IPv6, and a lab's
        first SYN then goes again a second later (docs/kernels.md)."""
        last: dict = {}

        def forwarding():
            last.update(self.wire.port_states())
            for h in self:
                last[f"{h.name} eth0"] = h.ns.run(h._link_ready)
            return all(v in (BR_STATE_FORWARDING, True) for v in last.values())
        try:
            until(forwarding, timeout, "the wire's bridge ports to forward and both hosts' links to be up")
        except TimeoutError:
            raise TcplabError(f"the wire did not come up within {timeout:g} s: {last} (bridge port state 3 "
                              "is forwarding; a host is ready when eth0 is operationally up and its IPv6 "
                              "address is a local route)") from None

    def __iter__(self):
        """The two hosts, client first: ``for h in hosts: h.quickack()``."""
        return iter((self.client, self.server))

    def cross_next(self, hold: float = 0.5) -> None:
        """Hold the next segment each way for about ``hold`` seconds (0.05 to 0.6), so that two
        segments the hosts send at once (two SYNs, two FINs) cross on the wire: each arrives after
        the other was sent, as in a simultaneous open or close.  The default, half a second, still
        crosses them where a loaded or emulated machine holds the lab's thread up between its two
        calls (a tenth of a second did not, on Debian 6.1 under TCG; docs/kernels.md).
        Deterministic, with no delay qdisc (sch_netem is missing on some kernels): a token bucket
        (tbf, 16 kbit/s, bucket 1600 bytes) on each wire port is emptied by filler frames (1514
        bytes, then one of 2000 bytes per second of ``hold``; EtherType 0x88b5, which no host
        answers); the last waits in the queue, and so does whatever is sent next.  Every later segment also waits its turn (a
        66-byte ACK: 33 ms), so each state lasts long enough to be polled.  Use it for handshakes
        and closes, not data."""
        self.wire.cross_next(tuple(self), hold)

    def simultaneous_open(self, family: Any = 4, ports: tuple[int, int] = (5001, 5002)):
        """Both hosts connect to each other at once, with no listener: the client from
        ``ports[0]`` to the server's ``ports[1]`` and the other way round.  The wire holds the next
        segment each way (:meth:`cross_next`, half a second), both sockets are made and bound
        first, and the two connect() calls follow each other directly, so the two SYNs cross on
        the wire even where a loaded machine holds the lab's thread up between the two calls.
        Returns the two :class:`~tcplab.Conn` (client's, server's), not yet connected."""
        from .sockets import Conn
        fam = family_of(family)
        self.cross_next()
        a, b = Conn.bound(self.client, fam, ports[0]), Conn.bound(self.server, fam, ports[1])
        a.start((self.server.addr(fam), ports[1]))
        b.start((self.client.addr(fam), ports[0]))
        return a, b

    @contextlib.contextmanager
    def one_cpu(self):
        """Run the calling thread, and the threads it starts (``send(wait=False)``), on one CPU
        until the block ends.  The kernel then handles both ends' segments on that CPU, in the
        order they were sent: on several CPUs, segments that two CPUs put on the veth path
        (one from the writing thread, one from an ACK processed in softirq) can overtake each
        other, and Linux's RACK takes the reordering for loss (spurious retransmissions, then
        an undone window reduction).  The CPU is chosen by process id, so parallel workers spread
        over the CPUs."""
        before = os.sched_getaffinity(0)
        cpus = sorted(before)
        os.sched_setaffinity(0, {cpus[os.getpid() % len(cpus)]})
        try:
            yield
        finally:
            os.sched_setaffinity(0, before)

    def held(self) -> int:
        """How many frames the wire holds back right now (after :meth:`cross_next`; else 0)."""
        return self.wire.held()

    def impair(self, *, c2s=None, s2c=None, both=None, drops=(), backend: str | None = None,
               seed: int | None = None):
        """Impair the wire: ``c2s``/``s2c`` (or ``both``) are :class:`tcplab.Netem` specs,
        ``drops`` a list of :class:`tcplab.Drop`.  Returns the applied
        :class:`tcplab.wire.impair.WireImpairments` (backend, counters, ``seed``).  Can be called once.
        ``seed`` (default: the topology's, else a fresh one) fixes the random loss pattern on
        the nftables backend."""
        return self.wire.impair(c2s=c2s, s2c=s2c, both=both, drops=drops, backend=backend, seed=seed)

    @property
    def impairments(self):
        """What :meth:`impair` applied (:class:`tcplab.wire.impair.WireImpairments`), else None."""
        wire = getattr(self, "wire", None)
        return wire.impairments if wire is not None else None

    def capture(self, name: str = "capture", *, bulk: bool = False, **kw: Any):
        """Start a capture on both ends of the link; see :class:`tcplab.Capture`.  With
        ``bulk=True``, a headers-only ring capture that keeps up with bulk transfers
        (:class:`tcplab.RingCapture`: ``snaplen=128``, ``ring_mb=16`` per end)."""
        if bulk:
            from ..observe.ring import RingCapture
            cap = RingCapture(self, name=name, **kw)
        else:
            from ..observe.capture import Capture
            cap = Capture(self, name=name, **kw)
        self.captures.append(cap)
        return cap

    def close(self) -> None:
        """Tear everything down: programs, sockets, impairments, namespaces (reclaimed by the
        kernel with their devices).  Raises once at the end if any clean-up step failed."""
        errors: list[str] = []
        for poller in getattr(self, "pollers", []):   # a lab that never stopped its poller
            try:
                poller.stop()
            except Exception as exc:
                errors.append(f"state poller: {exc!r}")
        if getattr(self, "wire", None) is not None:
            errors += self.wire.close()
        for h in (getattr(self, "client", None), getattr(self, "server", None)):
            if h is not None:
                errors += h._close()
        for ns in reversed(self._namespaces):
            errors += ns.close()
        self._namespaces = []
        self.subnet.release()
        if self._own_workdir and hasattr(self, "workdir"):
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise TcplabError("clean-up failed:\n  " + "\n  ".join(errors))

    def __enter__(self) -> "Topology":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
