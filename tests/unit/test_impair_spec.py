"""Impairment specs: eager validation, nftables rules, and the netem netlink request, none of which
needs root or sch_netem."""
import socket

import pytest

from tcplab.errors import ConfigError
from tcplab.wire.impair import Drop, Netem, chosen_backend


@pytest.mark.parametrize("kw, message", [
    ({"loss": 150}, r"loss=150 is out of range: a percentage from 0 to 100"),
    ({"loss": -1}, r"loss=-1 is out of range"),
    ({"delay": -5}, r"delay=-5 is out of range: milliseconds from 0"),
    ({"jitter": 5}, r"jitter=5 ms needs a delay"),
    ({"loss_corr": 25}, r"loss_corr needs loss > 0"),
    ({"reorder": 10}, r"reorder needs a delay"),
    ({"rate_kbit": 1}, r"rate_kbit=1 is out of range"),
    ({"duplicate": "5"}, r"duplicate='5' is out of range"),
])
def test_netem_validation(kw, message):
    with pytest.raises(ConfigError, match=message):
        Netem(**kw)


@pytest.mark.parametrize("args, kw, message", [
    (("^", "S"), {}, r"direction='\^': use '>' \(client to server\) or '<'"),
    ((">", "SX"), {}, r"unknown TCP flag letter"),
    ((">", "S"), {"nth": 0}, r"nth=0 is out of range: 1"),
    ((">", "S"), {"count": 0}, r"count=0 is out of range"),
    ((">", "S"), {"payload": "yes"}, r"payload='yes'"),
    ((">", "X"), {}, r"unknown TCP flag letter\(s\) 'X'.*or '\*' for any flags"),
])
def test_drop_validation(args, kw, message):
    with pytest.raises(ConfigError, match=message):
        Drop(*args, **kw)


def test_backend_name_is_validated(monkeypatch):
    with pytest.raises(ConfigError, match="backend 'tc' is unknown: use one of auto, netem, nft"):
        chosen_backend("tc")


def test_drop_rule_matches_exact_flags_on_the_ingress_port():
    assert Drop("<", "S.").nft_match() == \
        'iifname { "s", "st" } tcp flags & (fin|syn|rst|psh|ack|urg|ecn|cwr) == ack|syn'
    assert Drop(">", ".").nft_match().startswith('iifname "c" ')


def test_drop_with_any_flags_matches_every_tcp_segment_of_its_direction():
    """'*' (a data segment whether PSH is set or not) still matches TCP only: the capture's
    marker frames and anything else on the wire are never counted."""
    assert Drop(">", "*", nth=3, payload=True).nft_match() == 'iifname "c" meta l4proto tcp'
    assert Drop(">", "*", nth=3, payload=True).describe() == "drop segment #3 matching '> *' with payload"


def test_netem_request_encoding():
    """The exact TCA_OPTIONS tcplab sends for netem, encoded by pyroute2 as it would be sent:
    pyroute2 ignores unknown keywords silently, so each one is checked to land in the message."""
    from pyroute2.netlink.rtnl.tcmsg import plugins
    from pyroute2.netlink.rtnl.tcmsg.common import percent2u32, time2tick
    netem = plugins["netem"]
    spec = Netem(loss=25, loss_corr=10, delay=40, jitter=5, duplicate=1, reorder=3, corrupt=2, rate_kbit=800)
    kw = spec.tc_kwargs()
    assert kw == {"limit": 1000, "delay": 40000, "jitter": 5000, "loss": 25, "loss_corr": 10,
                  "duplicate": 1, "prob_reorder": 3, "prob_corrupt": 2, "rate": "800kbit"}
    opts = netem.get_parameters(dict(kw))
    assert opts["delay"] == time2tick(40000) and opts["jitter"] == time2tick(5000)
    assert opts["loss"] == percent2u32(25) and opts["duplicate"] == percent2u32(1)
    attrs = dict((a[0], a[1]) for a in opts["attrs"])
    assert attrs["TCA_NETEM_CORR"]["loss_corr"] == percent2u32(10)
    assert attrs["TCA_NETEM_REORDER"]["prob_reorder"] == percent2u32(3)
    assert attrs["TCA_NETEM_CORRUPT"]["prob_corrupt"] == percent2u32(2)
    assert attrs["TCA_NETEM_RATE"]["rate"] == 800 * 1000 // 8
    # and the whole request encodes, with the options and nothing else: no top-level TCA_RATE
    # (IPRoute.tc() adds one from the rate keyword, and the kernel refuses it with ERANGE)
    from pyroute2.netlink.rtnl.tcmsg import tcmsg
    from tcplab.wire.impair import netem_message
    msg = netem_message(7, spec)
    msg.encode()
    back = tcmsg(msg.data)
    back.decode()
    assert (back["index"], back["handle"]) == (7, 0x10000)
    assert [name for name, _ in back["attrs"]] == ["TCA_KIND", "TCA_OPTIONS"]
    decoded = back.get_attr("TCA_OPTIONS")
    assert decoded.get_attr("TCA_NETEM_RATE")["rate"] == 800 * 1000 // 8
    assert decoded["delay"] == time2tick(40000) and decoded["limit"] == 1000


def test_describe_names_backend_specs_and_drops():
    from tcplab.wire.impair import WireImpairments
    imp = WireImpairments(wire=None, backend="nft", seed=77)
    imp.netem["c2s"] = Netem(loss=20)
    imp.drops = [Drop("<", "S."), Drop(">", "S", count=2), Drop(">", "P.", payload=True)]
    assert imp.describe() == ("backend nft; seed 77 (replay the same losses with --tcplab-seed 77); "
                              "c2s: loss=20; drop segment #1 matching '< S.'; "
                              "drop segment #1-#2 matching '> S'; drop segment #1 matching '> P.' with payload")


def test_describe_says_netem_losses_do_not_replay_and_targeted_drops_need_no_seed():
    from tcplab.wire.impair import WireImpairments
    imp = WireImpairments(wire=None, backend="netem", seed=5)
    imp.netem["s2c"] = Netem(loss=1)
    assert "seed 5 (netem draws from the kernel's own PRNG: --tcplab-seed 5 does not replay" in imp.describe()
    only_drops = WireImpairments(wire=None, backend="nft", seed=5)
    only_drops.drops = [Drop("<", "S.")]
    assert not only_drops.random and "seed" not in only_drops.describe()


@pytest.mark.parametrize("bad", ["ipv4", socket.AF_INET, socket.AF_INET6, True, None])
def test_family_is_4_or_6(bad):
    from tcplab.lab.topology import family_of
    assert family_of(4) == 4 and family_of(6) == 6
    with pytest.raises(ConfigError, match=r"is not an IP family: use 4 or 6"):
        family_of(bad)
