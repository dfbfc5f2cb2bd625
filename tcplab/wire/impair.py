"""Impairments on the wire between client and server: statistical (netem or nftables) and targeted.

Everything here acts in the middle *wire* namespace, on frames crossing its bridge.  A frame
dropped there has left the sender (its capture shows it, its TCP retransmits it) and never reaches
the receiver (its capture does not show it): real loss, the same for every backend.

Two backends for statistical impairments, chosen by probing the kernel (not its version string):

* ``netem``: sch_netem on the egress of the wire port towards the receiver.  Loss (with
  correlation), delay, jitter, duplication, reordering, corruption, rate.
* ``nft``: kernel nftables in the wire's bridge, for kernels without sch_netem.  Random loss only;
  anything else raises :class:`~tcplab.errors.Unsupported` with the exact reason (a lab is never
  run unimpaired).

Targeted drops (:class:`Drop`) always use nftables: drop exactly the Nth segment in one direction
whose flags match a pattern (and optionally that carries payload), e.g. the first SYN-ACK.

The backend is ``auto`` unless ``TCPLAB_BACKEND`` (or pytest's ``--tcplab-backend``) says
``netem`` or ``nft``.
"""
from __future__ import annotations

import errno
import json
import random
import subprocess
from dataclasses import dataclass, fields
from typing import Any

from .. import tools
from ..errors import ConfigError, TcplabError, Unsupported, check_int
from ..errors import hide_config_errors as __tracebackhide__  # noqa: F401  (pytest)
from ..notation import flags_from_letters

BACKENDS = ("auto", "netem", "nft")
NFT_NEEDED_FOR = "the wire's exact drops and, without sch_netem, its random loss"
DIRECTIONS = {">": "c2s", "c2s": "c2s", "client>server": "c2s", "<": "s2c", "s2c": "s2c",
              "server>client": "s2c"}
#: the nftables match of the wire port a frame *enters* the bridge through, per direction (netem
#: sits on the one it leaves through: EGRESS_PORT_HOST below).  The server's side is its veth
#: peer "s", or the delay line's tap "st" in its place (see delayline.py).
INGRESS_PORT = {"c2s": 'iifname "c"', "s2c": 'iifname { "s", "st" }'}
NFT_FLAG = {"FIN": "fin", "SYN": "syn", "RST": "rst", "PSH": "psh", "ACK": "ack", "URG": "urg",
            "ECE": "ecn", "CWR": "cwr"}


#: what the delay line emulates on the nftables backend (see delayline.py); rate is a tbf there
DELAYLINE_FEATURES = ("delay", "jitter", "duplicate", "reorder", "corrupt")


def _pct(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100:
        raise ConfigError(f"{name}={v!r} is out of range: a percentage from 0 to 100 (e.g. {name}=25)")
    return float(v)


def _ms(name: str, v: Any, hi: float = 60_000) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= hi:
        raise ConfigError(f"{name}={v!r} is out of range: milliseconds from 0 to {hi:g}")
    return float(v)


@dataclass(frozen=True)
class Netem:
    """Statistical impairment of one direction.  Percentages 0-100, times in milliseconds."""
    loss: float = 0
    loss_corr: float = 0
    delay: float = 0
    jitter: float = 0
    duplicate: float = 0
    reorder: float = 0
    corrupt: float = 0
    rate_kbit: int | None = None
    limit: int = 1000

    def __post_init__(self):
        for n in ("loss", "loss_corr", "duplicate", "reorder", "corrupt"):
            _pct(n, getattr(self, n))
        _ms("delay", self.delay)
        _ms("jitter", self.jitter)
        if self.jitter and not self.delay:
            raise ConfigError(f"jitter={self.jitter:g} ms needs a delay: set delay >= jitter")
        if self.loss_corr and not self.loss:
            raise ConfigError("loss_corr needs loss > 0 (correlation of what?)")
        if self.reorder and not self.delay:
            raise ConfigError("reorder needs a delay: reordered segments skip the delay the others get")
        if self.rate_kbit is not None:
            check_int("rate_kbit", self.rate_kbit, 8, 10**8, "an integer from 8 to 100000000")
        check_int("limit", self.limit, 1, 10**6, "packets from 1 to 1000000")

    def is_null(self) -> bool:
        return all(getattr(self, f.name) in (0, None) for f in fields(self) if f.name != "limit")

    def tc_kwargs(self) -> dict:
        """Keyword arguments for pyroute2's ``tc("add", "netem", ...)`` (times in microseconds).
        pyroute2 silently ignores unknown keywords, so the names here are pinned by a test."""
        kw: dict[str, Any] = {"limit": self.limit}
        if self.delay:
            kw["delay"] = int(self.delay * 1000)
        if self.jitter:
            kw["jitter"] = int(self.jitter * 1000)
        if self.loss:
            kw["loss"] = self.loss
        if self.loss_corr:
            kw["loss_corr"] = self.loss_corr
        if self.duplicate:
            kw["duplicate"] = self.duplicate
        if self.reorder:
            kw["prob_reorder"] = self.reorder
        if self.corrupt:
            kw["prob_corrupt"] = self.corrupt
        if self.rate_kbit:
            kw["rate"] = f"{self.rate_kbit}kbit"
        return kw


@dataclass(frozen=True)
class Drop:
    """Drop exactly the ``nth`` segment travelling ``direction`` whose flags are exactly ``flags``
    (tcpdump letters, e.g. ``"S."`` for SYN-ACK, ``"."`` for a pure ACK, ``"F."``; ``"*"`` for any
    flags: ``Drop(">", "*", nth=3, payload=True)`` is the client's third data segment, whether
    Linux set PSH on it or not).  With
    ``payload=True``/``False`` only segments with/without payload count.  ``count`` drops that
    many consecutive matches from the ``nth`` on (e.g. the first three SYNs: ``count=3``)."""
    direction: str
    flags: str
    nth: int = 1
    payload: bool | None = None
    count: int = 1

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"direction={self.direction!r}: use '>' (client to server) or '<' (server to client)")
        try:
            if self.flags != "*":
                flags_from_letters(self.flags)
        except ValueError as exc:
            raise ConfigError(f"{exc}, or '*' for any flags") from None
        check_int("nth", self.nth, 1, 10**6, "1 (the first match) to 1000000")
        check_int("count", self.count, 1, 10**6, "1 to 1000000 consecutive matches")
        if self.payload not in (None, True, False):
            raise ConfigError(f"payload={self.payload!r}: use True, False or None (either)")

    @property
    def dir(self) -> str:
        return DIRECTIONS[self.direction]

    def nft_match(self) -> str:
        if self.flags == "*":
            return f"{INGRESS_PORT[self.dir]} meta l4proto tcp"
        names = flags_from_letters(self.flags)
        want = "|".join(NFT_FLAG[n] for n in sorted(names)) if names else "0x0"
        mask = "|".join(NFT_FLAG[n] for n in NFT_FLAG)
        return f"{INGRESS_PORT[self.dir]} tcp flags & ({mask}) == {want}"

    def describe(self) -> str:
        arrow = ">" if self.dir == "c2s" else "<"
        extra = "" if self.payload is None else (" with payload" if self.payload else " without payload")
        which = f"#{self.nth}" if self.count == 1 else f"#{self.nth}-#{self.nth + self.count - 1}"
        return f"drop segment {which} matching '{arrow} {self.flags}'{extra}"


#: the seeded loss pattern repeats after this many TCP frames per direction
SEED_PERIOD = 16384


def new_seed() -> int:
    """A fresh seed for one test's random impairments (printed and recorded so it can be replayed)."""
    return random.SystemRandom().randrange(1, 2**31)


def seeded_loss_pattern(seed: int, direction: str, loss: float, period: int = SEED_PERIOD) -> list[int]:
    """Which of the TCP frames ``0 .. period-1`` travelling ``direction`` are lost: each one
    independently with probability ``loss`` percent, drawn from a PRNG seeded with
    ``(seed, direction)``.  The same seed always gives the same pattern."""
    rng = random.Random(f"tcplab-{seed}-{direction}")
    p = loss / 100.0
    return [i for i in range(period) if rng.random() < p]


# -- backend detection -----------------------------------------------------------------------

_probe_cache: dict[str, Any] = {}


def probe_netem() -> tuple[bool, str]:
    """Can this kernel attach a netem qdisc?  Tried for real on a veth in a scratch namespace
    (never the root namespace)."""
    if "netem" in _probe_cache:
        return _probe_cache["netem"]
    from .netns import Namespace

    def attempt() -> tuple[bool, str]:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError
        with IPRoute() as ipr:
            ipr.link("add", ifname="probe0", kind="veth", peer={"ifname": "probe1"})
            (idx,) = ipr.link_lookup(ifname="probe0")
            try:
                ipr.tc("add", "netem", index=idx, handle="1:", delay=1000)
                return True, "sch_netem works"
            except NetlinkError as exc:
                if exc.code not in (errno.ENOENT, errno.EOPNOTSUPP):   # anything but "no such qdisc kind"
                    raise
                return False, f"the kernel refused a netem qdisc ({exc.args[-1] if exc.args else exc}): " \
                              "sch_netem is not built in and cannot be loaded"
    with Namespace("netem-probe") as ns:
        result = ns.run(attempt)
    _probe_cache["netem"] = result
    return result


def probe_nft() -> tuple[bool, str]:
    if "nft" in _probe_cache:
        return _probe_cache["nft"]
    nft = tools.find("nft")
    if nft is None:
        result = (False, tools.missing("nft", NFT_NEEDED_FOR))
    else:
        from .netns import Namespace
        with Namespace("nft-probe") as ns:
            r = ns.run(subprocess.run, [nft, "-f", "-"], input="table bridge probe {\n chain f {\n type filter "
                       "hook forward priority 0;\n tcp flags syn counter\n }\n}\n", capture_output=True, text=True)
        result = (r.returncode == 0, "nftables works" if r.returncode == 0 else
                  f"nft could not create a bridge table: {r.stderr.strip()} (kernel lacks nf_tables?)")
    _probe_cache["nft"] = result
    return result


def chosen_backend(requested: str | None = None) -> str:
    """Resolve ``auto`` to the backend this kernel supports; validate explicit choices."""
    req = (requested or "auto").strip().lower()
    if req not in BACKENDS:
        raise ConfigError(f"backend {req!r} is unknown: use one of {', '.join(BACKENDS)} "
                          "(Topology(backend=...), or pytest's --tcplab-backend / TCPLAB_BACKEND)")
    if req == "auto":
        return "netem" if probe_netem()[0] else "nft"
    return req


# -- applying impairments in the wire namespace -------------------------------------------------

class WireImpairments:
    """What is currently applied on a topology's wire.  Built by :meth:`tcplab.wire.link.Wire.impair`."""

    TABLE = "tcplab"

    def __init__(self, wire, backend: str, seed: int):
        self.wire = wire
        self.backend = backend
        #: seed of the random impairments (decided by :meth:`Wire.impair`); on the nftables
        #: backend it fixes which TCP frames of each direction are lost (replayable); netem draws
        #: from the kernel's own PRNG
        self.seed = seed
        self.netem: dict[str, Netem] = {}
        self.drops: list[Drop] = []
        #: the user-space relay that delays frames where the kernel has no sch_netem
        self.delayline = None
        self._nft_rules: list[str] = []
        self._chains: list[str] = []

    def apply(self, c2s: Netem | None, s2c: Netem | None, drops: list[Drop]) -> None:
        relay: dict[str, dict] = {}
        rates: dict[str, Netem] = {}
        for d, spec in (("c2s", c2s), ("s2c", s2c)):
            if spec is None or spec.is_null():
                continue
            if self.backend == "netem":
                ok, why = probe_netem()
                if not ok:
                    raise Unsupported(f"netem backend requested but {why}")
                self.wire.run(self._tc_add, d, spec)
            else:
                if spec.loss_corr:
                    raise Unsupported(f"loss_corr={spec.loss_corr:g} needs sch_netem's correlated loss, which this "
                                      f"kernel lacks (backend {self.backend}): the nftables backend loses each "
                                      "frame independently; leave loss_corr out, or run where netem is "
                                      "(pytest --tcplab-vm)")
                line = {k: getattr(spec, k) for k in DELAYLINE_FEATURES if getattr(spec, k)}
                if line:
                    relay[d] = line
                if spec.rate_kbit:
                    rates[d] = spec
                if spec.loss:
                    # A seeded pattern: numgen inc counts this direction's TCP frames, and the
                    # indices drawn from the seed are dropped, so a seed replays the same losses.
                    lost = seeded_loss_pattern(self.seed, d, spec.loss)
                    if lost:
                        pick = "{ " + ", ".join(map(str, lost)) + " }" if len(lost) > 1 else f"== {lost[0]}"
                        self._nft_rules.append(f"{INGRESS_PORT[d]} meta l4proto tcp "
                                               f'numgen inc mod {SEED_PERIOD} {pick} counter drop')
            self.netem[d] = spec
        for drop in drops:
            self._nft_rules.extend(self._drop_rules(drop, len(self.drops)))
            self.drops.append(drop)
        if self._nft_rules:
            self._nft_load()
        if relay:
            from .delayline import DelayLine
            self.delayline = DelayLine(self.wire, relay, self.seed)
        for d, spec in rates.items():
            self.wire.run(self._tbf_add, d, spec)

    def _tbf_add(self, direction: str, spec: Netem) -> None:
        """Rate on the nftables backend: a token bucket on the bridge port the direction leaves
        through (the delay line's tap towards the server when it is there: the rate applies
        before the delay, as it does inside netem).  The bucket holds two full frames, so the
        rate holds over a few milliseconds; the queue holds ``limit`` full frames."""
        from .delayline import TAP
        from .netns import ipr as _ipr
        ipr = _ipr(self.wire.ns)
        port = TAP if direction == "c2s" and self.delayline else None
        idx = ipr.link_lookup(ifname=port)[0] if port else self.wire.ports[EGRESS_PORT_HOST[direction]]
        ipr.tc("replace", "tbf", index=idx, handle=0x10000, rate=f"{spec.rate_kbit}kbit", burst=3200,
               limit=spec.limit * 1514)

    def close(self) -> list[str]:
        """Stop what runs outside the kernel (the delay line).  Returns clean-up errors."""
        return self.delayline.close() if self.delayline else []

    def _tc_add(self, direction: str, spec: Netem) -> None:
        from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST
        from pyroute2.netlink.rtnl import RTM_NEWQDISC
        from .netns import ipr as _ipr
        ipr = _ipr(self.wire.ns)
        idx = self.wire.ports[EGRESS_PORT_HOST[direction]]
        msg = netem_message(idx, spec)
        msg["header"]["type"] = RTM_NEWQDISC
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        # nlm_request_batch: pyroute2 0.9's nlm_request() fails on its own status table (KeyError)
        list(ipr.nlm_request_batch([msg]))

    def _drop_rules(self, drop: Drop, n: int) -> list[str]:
        first, last = drop.nth - 1, drop.nth + drop.count - 2
        pick = f"== {first}" if first == last else f"{first}-{last}"
        count = f"numgen inc mod 1000000000 {pick} counter drop comment \"drop{n}\""
        if drop.payload is None:
            return [f"{drop.nft_match()} {count}"]
        # Payload length = IP length - IP header - TCP header (doff words): one jump per doff value
        # into a chain that holds the single counting rule, so every match shares one counter.
        rules = []
        for doff in range(5, 16):
            hdr = doff * 4
            for fam, cond in (("ip", f"ip length {'>' if drop.payload else '=='} {20 + hdr}"),
                              ("ip6", f"ip6 length {'>' if drop.payload else '=='} {hdr}")):
                rules.append(f"ether type {fam} {drop.nft_match()} tcp doff {doff} {cond} jump drop{n}")
        self._chains.append(f"  chain drop{n} {{\n    {count}\n  }}")
        return rules

    def _nft_load(self) -> None:
        ok, why = probe_nft()
        if not ok:
            raise Unsupported(why)
        chains = "\n".join(self._chains)
        body = "\n    ".join(self._nft_rules)
        script = (f"flush ruleset\ntable bridge {self.TABLE} {{\n{chains}\n  chain forward {{\n    type filter "
                  f"hook forward priority 0; policy accept;\n    {body}\n  }}\n}}\n")
        r = self.wire.run(subprocess.run, [tools.require("nft", NFT_NEEDED_FOR), "-f", "-"], input=script, capture_output=True, text=True)
        if r.returncode != 0:
            raise TcplabError(f"nft rejected tcplab's rules: {r.stderr.strip()}\nrules:\n{script}")

    def counters(self) -> dict[str, int]:
        """Packets dropped so far by each nftables rule: ``drop0``.. for targeted drops, ``loss``
        for random loss (summed over directions)."""
        if not self._nft_rules:
            return {}
        r = self.wire.run(subprocess.run, [tools.require("nft", NFT_NEEDED_FOR), "-j", "list", "table", "bridge", self.TABLE],
                               capture_output=True, text=True)
        if r.returncode != 0:
            raise TcplabError(f"nft list failed: {r.stderr.strip()}")
        out: dict[str, int] = {}
        for item in json.loads(r.stdout)["nftables"]:
            rule = item.get("rule")
            if not rule:
                continue
            pk = next((e["counter"]["packets"] for e in rule["expr"] if "counter" in e), None)
            if pk is None:
                continue
            name = rule.get("comment") or "loss"
            out[name] = out.get(name, 0) + pk
        return out

    def netem_stats(self) -> dict[str, dict]:
        """Per direction: the qdisc's sent/dropped packet counts (netem backend)."""
        from .netns import ipr as _ipr

        def read():
            ipr = _ipr(self.wire.ns)
            out = {}
            for d in self.netem:
                idx = self.wire.ports[EGRESS_PORT_HOST[d]]
                for q in ipr.get_qdiscs(index=idx):
                    if q.get_attr("TCA_KIND") == "netem":
                        st = q.get_attr("TCA_STATS2").get_attr("TCA_STATS_BASIC")
                        st2 = q.get_attr("TCA_STATS2").get_attr("TCA_STATS_QUEUE")
                        out[d] = {"packets": st["packets"], "drops": st2["drops"]}
            return out
        return self.wire.run(read)

    @property
    def random(self) -> bool:
        """Whether anything here is random (loss, jitter, duplication...), i.e. the seed matters."""
        return any(getattr(spec, k) for spec in self.netem.values()
                   for k in ("loss", "jitter", "duplicate", "reorder", "corrupt"))

    def seed_note(self) -> str:
        if self.backend == "nft":
            return f"seed {self.seed} (replay the same losses with --tcplab-seed {self.seed})"
        return (f"seed {self.seed} (netem draws from the kernel's own PRNG: --tcplab-seed {self.seed} "
                "does not replay its losses; use TCPLAB_BACKEND=nft for a replayable loss pattern)")

    def describe(self) -> str:
        parts = [f"backend {self.backend}"]
        if self.random:
            parts.append(self.seed_note())
        for d, spec in self.netem.items():
            # the spec as it was written (Netem's own units: ms, %, kbit/s)
            parts.append(f"{d}: " + ", ".join(f"{f.name}={getattr(spec, f.name):g}" for f in fields(spec)
                                              if f.name != "limit" and getattr(spec, f.name) not in (0, None)))
        if self.delayline is not None:
            parts.append("delay, jitter, reordering, duplication and corruption by tcplab's delay line "
                         "(no sch_netem here)")
        if self.backend == "nft" and any(spec.rate_kbit for spec in self.netem.values()):
            parts.append("rate by a tbf qdisc")
        parts += [d.describe() for d in self.drops]
        return "; ".join(parts)


def netem_message(index: int, spec: Netem):
    """The RTM_NEWQDISC message that puts ``spec`` on device ``index`` as its root netem qdisc.
    Built here rather than by ``IPRoute.tc("replace", "netem", rate=...)``: pyroute2 also turns
    its ``rate`` keyword into the message's own TCA_RATE attribute (an estimator), which the
    kernel refuses with ERANGE, so a netem rate never worked that way (its other plugins drop the
    stray keyword; netem's does not)."""
    from pyroute2.netlink.rtnl import TC_H_ROOT
    from pyroute2.netlink.rtnl.tcmsg import plugins, tcmsg
    msg = tcmsg()
    msg["index"], msg["handle"], msg["parent"] = index, 0x10000, TC_H_ROOT
    msg["attrs"] = [["TCA_KIND", "netem"], ["TCA_OPTIONS", plugins["netem"].get_parameters(spec.tc_kwargs())]]
    return msg


#: host whose wire port a direction leaves through
EGRESS_PORT_HOST = {"c2s": "server", "s2c": "client"}
