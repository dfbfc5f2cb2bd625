"""The topology on the real kernel: addresses, neighbours, offloads, settings, clean-up."""
import os
import tempfile
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from tcplab import Topology
from tcplab.settings import TCP_KNOBS


def root_state():
    with IPRoute() as ipr:
        links = sorted(l.get_attr("IFLA_IFNAME") for l in ipr.get_links())
        addrs = sorted(a.get_attr("IFA_ADDRESS") for a in ipr.get_addr())
    netns = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []
    return links, addrs, netns


def test_root_namespace_is_never_changed(tmp_path):
    before = root_state()
    with Topology(workdir=tmp_path) as topo:
        during = root_state()
        topo.impair(drops=[])
    assert before == during == root_state()


def test_a_topology_removes_its_own_folder_and_keeps_a_given_one(tmp_path):
    """Without a workdir, the pcaps live in a temporary folder of the topology's own, gone after
    close(); a workdir the caller gives keeps them."""
    def run(**kw):
        with Topology(**kw) as topo:
            srv = topo.server.listen(7788)
            with topo.capture() as cap:
                topo.client.connect(srv.address)
                srv.accept()
            assert all(p.stat().st_size > 24 for p in cap.paths.values())
            return topo.workdir, set(cap.paths.values())
    own, pcaps = run()
    assert own.parent == Path(tempfile.gettempdir()) and not own.exists()
    kept, pcaps = run(workdir=tmp_path / "keep")
    assert kept == tmp_path / "keep" and all(p.exists() for p in pcaps)


def test_hosts_have_addresses_static_neighbours_and_pinned_settings(hosts):
    def facts():
        with IPRoute() as ipr:
            neigh = {(n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR"), n["state"]) for n in ipr.get_neighbours()}
            addrs = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr()}
            lo = ipr.get_links(ipr.link_lookup(ifname="lo")[0])[0].get_attr("IFLA_OPERSTATE")
        return neigh, addrs, lo
    neigh, addrs, lo = hosts.client.ns.run(facts)
    c, srv = hosts.client, hosts.server
    assert {c.addr(4), c.addr(6)} <= addrs
    assert (srv.addr(4), "02:00:c6:12:00:02", 0x80) in neigh
    assert (srv.addr(6), "02:00:c6:12:00:02", 0x80) in neigh
    assert lo in ("UNKNOWN", "UP")
    for knob in TCP_KNOBS:
        if hosts.client.ns.has_sysctl(knob.key):
            assert " ".join(hosts.client.sysctl(knob.key).split()) == knob.value


def test_offloads_are_off_so_segments_and_checksums_are_real(hosts):
    from pyroute2.ethtool.ioctl import IoctlEthtool

    def active():
        e = IoctlEthtool("eth0")
        f = e.get_features()
        e.close()
        return {n: f.is_active(n) for n in ("tx-checksum-ip-generic", "tx-tcp-segmentation",
                                            "tx-generic-segmentation", "tx-scatter-gather")}
    assert not any(hosts.server.ns.run(active).values())
    # A 20 kB write crosses as MSS-sized segments with valid checksums.
    with hosts.capture() as cap:
        srv = hosts.server.listen(7788)
        c = hosts.client.connect(srv.address)
        peer = srv.accept()
        c.send(b"x" * 20000)
        peer.recv_exactly(20000)
    conn = cap.trace.connection(port=7788)
    assert max(s.length for s in conn) <= 1448
    from scapy.layers.inet import TCP
    for p in cap.packets["server"]:
        if TCP in p:
            raw = p.__class__(bytes(p))
            del raw[TCP].chksum
            assert p.__class__(bytes(raw))[TCP].chksum == p[TCP].chksum


def test_no_arp_or_nd_in_a_handshake(hosts):
    with hosts.capture() as cap:
        srv = hosts.server.listen(7788, family=6)
        hosts.client.connect(srv.address)
        srv.accept()
    from scapy.layers.l2 import ARP
    from scapy.layers.inet6 import ICMPv6ND_NS
    for pkts in cap.packets.values():
        assert not [p for p in pkts if ARP in p or ICMPv6ND_NS in p]


def test_sockets_are_in_their_host(hosts):
    s = hosts.server.socket()
    s.bind((hosts.server.addr(4), 0))  # only exists in the server namespace
    try:
        hosts.client.socket().bind((hosts.server.addr(4), 0))
        raise AssertionError("the client should not own the server's address")
    except OSError as exc:
        assert exc.errno == 99


def test_program_runs_inside_the_host_and_is_stopped(hosts):
    prog = hosts.server.popen(["nc", "-l", "-s", hosts.server.addr(4), "-p", "9000"])
    hosts.server.wait_listening(9000)
    c = hosts.client.connect((hosts.server.addr(4), 9000))
    c.send(b"hi\n")
    c.close()
    assert prog.wait(5) == 0
    assert prog.stdout == "hi\n"
    sleeper = hosts.client.popen(["sleep", "600"])
    hosts.close()
    assert sleeper.proc.poll() is not None


def test_parallel_topologies_do_not_clash(tmp_path):
    import concurrent.futures as cf

    def one(i):
        with Topology(workdir=tmp_path / str(i)) as topo:
            srv = topo.server.listen(7788)
            topo.client.connect(srv.address)
            return srv.accept().state()
    with cf.ThreadPoolExecutor(4) as ex:
        assert list(ex.map(one, range(4))) == ["ESTABLISHED"] * 4


def test_each_live_topology_has_a_subnet_of_its_own():
    """Two topologies alive at once never share an address (the state tracepoint tells their
    sockets apart by address); a closed topology's subnet is free again."""
    from tcplab import Topology
    with Topology() as a, Topology() as b:
        assert a.subnet.index != b.subnet.index
        assert {a.client.addr(4), a.server.addr(4)}.isdisjoint({b.client.addr(4), b.server.addr(4)})
        assert {a.client.addr(6), a.server.addr(6)}.isdisjoint({b.client.addr(6), b.server.addr(6)})
        c = b.client.connect(b.server.listen(port=7000).address)
        assert c.state() == "ESTABLISHED"
        taken = b.subnet.index
    with Topology() as c:
        assert c.subnet.index <= taken


def test_each_lab_namespace_has_a_small_tcp_table_of_its_own(hosts):
    """sock_diag walks every bucket of a namespace's TCP table on each dump: lab namespaces are
    made from tcplab's nursery namespace, so each has CHILD_EHASH buckets of its own instead of
    sharing the machine's (262 144 here), and the root namespace's setting is untouched."""
    from tcplab.wire.netns import CHILD_EHASH, nursery
    if nursery() is None:
        pytest.skip("this kernel has no net.ipv4.tcp_child_ehash_entries (Linux < 6.1): the shared table")
    for h in hosts:
        assert int(h.ns.sysctl("net.ipv4.tcp_ehash_entries")) == CHILD_EHASH
    assert open("/proc/sys/net/ipv4/tcp_child_ehash_entries").read().strip() == "0"
