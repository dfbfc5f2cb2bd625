"""Delay, jitter, reordering, duplication and corruption where the kernel has no sch_netem.

No other qdisc of such a kernel holds a frame for a time (tbf and htb shape rates; sch_fq, which
honours departure times, is missing too), so the delay line does it in user space, between the
wire's bridge and the server's side of it:

    client -- c [bridge "wire"] st (tap) == delay line process == s (veth) -- server

The server's veth peer ``s`` leaves the bridge and a tap ``st`` takes its place.  What the bridge
forwards towards the server leaves through the tap; the delay line reads it, holds it, and sends
it out of ``s``; what the server sends arrives on ``s``, waits its turn, and is written into the
tap, where the bridge receives it.  The nftables rules (targeted drops, random loss) stay in the
bridge, so loss comes before the delay towards the server and after it towards the client; rate
limits (tbf) stay kernel-native on the bridge's ports.

The relay is a process of its own (:mod:`tcplab.wire._delayline_worker`): a thread of the lab
would share the interpreter lock with the capture threads and release frames up to 5 ms late.
It dies when the lab closes its standard input, or when the lab dies (end of file), so nothing
outlives a crash.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

from ..errors import TcplabError, Unsupported
from ..wait import until
from .bridge import BR_STATE_FORWARDING, BRIDGE, SERVER, WIRE_PORT, bridge_port_state
from .netns import ipr as _ipr

TAP = "st"
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
ETH_P_ALL = 0x0003
SOL_PACKET, PACKET_IGNORE_OUTGOING = 263, 23


def _splice(wire, port: str, bridge: str) -> tuple[int, socket.socket]:
    """In the wire's thread: take ``port`` out of the bridge, put a tap in its place; return the
    tap's fd and a packet socket on ``port``."""
    ipr = _ipr(wire)
    (port_idx,) = ipr.link_lookup(ifname=port)
    (br,) = ipr.link_lookup(ifname=bridge)
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise Unsupported(f"the delay line needs a tap device and /dev/net/tun cannot be opened ({exc.strerror}): "
                          "in a container, pass --device /dev/net/tun") from None
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", TAP.encode(), IFF_TAP | IFF_NO_PI))
        ipr.link("set", index=port_idx, master=0)
        (tap_idx,) = ipr.link_lookup(ifname=TAP)
        ipr.link("set", index=tap_idx, master=br, state="up")
        pkt = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        pkt.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        pkt.bind((port, ETH_P_ALL))
    except BaseException:
        os.close(fd)
        raise
    return fd, pkt


def _tap_forwarding(ns) -> bool:
    ipr = _ipr(ns)
    (idx,) = ipr.link_lookup(ifname=TAP)
    return bridge_port_state(ipr, idx) == BR_STATE_FORWARDING


class DelayLine:
    """The relay between the bridge and the server, with a spec per direction (``{"delay": ms,
    "jitter": ms, "duplicate": %, "reorder": %, "corrupt": %}``) and the impairments' seed."""

    def __init__(self, wire, specs: dict[str, dict], seed: int):
        fd, pkt = wire.run(_splice, wire.ns, WIRE_PORT[SERVER], BRIDGE)
        try:
            worker = Path(__file__).with_name("_delayline_worker.py")
            args = {"seed": seed, "tap": fd, "packet": pkt.fileno(), **specs}
            # -I -S: no user site, no site-packages: the worker needs the standard library only
            self.proc = subprocess.Popen([sys.executable, "-I", "-S", str(worker), json.dumps(args)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                         pass_fds=(fd, pkt.fileno()))
        finally:
            os.close(fd)
            pkt.close()
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            raise TcplabError(f"the delay line did not start (exit {self.proc.wait()})")
        until(lambda: wire.run(_tap_forwarding, wire.ns), 5, "the delay line's tap to forward")
        self.stats: dict | None = None

    def close(self) -> list[str]:
        """Stop the relay; its counters land in :attr:`stats`.  Returns clean-up errors."""
        if self.proc.poll() is None:
            try:
                out, _ = self.proc.communicate(input="", timeout=5)
                line = out.strip().splitlines()[-1] if out.strip() else ""
                self.stats = json.loads(line) if line.startswith("{") else None
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return ["the delay line did not stop within 5 s: killed"]
        return []
