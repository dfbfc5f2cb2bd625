"""The kernel's sender record (tcplab.observe.sender): the tcp:tcp_probe record lines up with the
wire on the captures' clock, says what Reno did at a fast retransmit, and is drawn under the
time-sequence graph; without perf events it is TCP_INFO sampled through sock_diag, and says so."""
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tcplab import Drop, Netem

pytestmark = pytest.mark.needs_root
HERE = Path(__file__).parent
PORT = 7788


def _transfer(hosts, n=300_000, **impair):
    srv = hosts.server.listen(PORT)
    client = hosts.client.connect(srv.address)
    peer = srv.accept()
    hosts.impair(**impair)
    sending = client.send(bytes(n), wait=False)
    assert peer.recv_exactly(n, timeout=30) == bytes(n)
    sending.wait(10)
    return client, peer


def test_the_record_lines_up_with_the_wire_at_a_fast_retransmit(hosts):
    """One data segment lost: the last sample before the retransmission left has no threshold
    yet; the first after it has Reno's ssthresh = cwnd / 2 of that sample.  Every sample comes
    after a segment the client received (the tracepoint fires on arrival), and every snd_una is
    an acknowledgement the client received."""
    for h in hosts:
        h.rto_min(200)
    with hosts.one_cpu(), hosts.capture(sender=True) as cap:
        client, _ = _transfer(hosts, drops=[Drop(">", "*", nth=4, payload=True)])
    conn = cap.trace.connection(port=PORT)
    record = conn.sender("client")
    assert not record.sampled and record.source == "tcp:tcp_probe"
    isn = conn.isn["client"]
    seen, retrans = set(), None
    for s in conn:
        if conn.side(s) == "client" and s.length:
            rel = conn.rel_seq(s)
            if rel in seen and retrans is None:
                retrans = s
            seen.add(rel)
    assert retrans is not None, "no retransmission on the wire"
    before = [s for s in record if s.time < retrans.time]
    after = [s for s in record if s.time > retrans.time]
    assert before and after
    assert before[-1].ssthresh is None, before[-1]
    assert after[0].ssthresh == max(before[-1].cwnd >> 1, 2), (before[-1], after[0])
    # the same clock and the same connection as the capture
    arrivals = sorted(s.time for s in conn.received if conn.side(s) == "server")
    acks = {s.ack for s in conn.received if conn.side(s) == "server"}
    for sample in record:
        last_arrival = max((t for t in arrivals if t <= sample.time), default=None)
        assert last_arrival is not None and sample.time - last_arrival < 0.5, sample
        assert sample.snd_una in acks | {(isn + 1) % 2**32}, sample
    # the record is written beside the pcaps, and tsg draws it under the graph
    assert cap.sender_path.is_file()
    svg = cap.sender_path.with_name("g.svg")
    r = subprocess.run([sys.executable, "-m", "tcplab", "tsg", str(cap.paths["client"]), "--svg", str(svg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "cwnd and ssthresh from tcp:tcp_probe" in r.stdout, r.stdout + r.stderr
    text = svg.read_text()
    assert text.count('class="cwnd"') >= 1 and text.count('class="ssthresh"') >= 1


def test_ssthresh_is_the_threshold_itself_after_recovery(hosts):
    """Outside recovery the tracepoint shows max(ssthresh, 3/4 cwnd); the record undoes it, so
    after one loss and no other the threshold stays where recovery set it while cwnd grows."""
    for h in hosts:
        h.rto_min(200)
    with hosts.one_cpu(), hosts.capture(sender=True) as cap:
        _transfer(hosts, 600_000, both=Netem(delay=5), drops=[Drop(">", "*", nth=30, payload=True)])
    conn = cap.trace.connection(port=PORT)
    record = conn.sender("client")
    thresholds = [s.ssthresh for s in record if s.ssthresh is not None]
    assert thresholds and len(set(thresholds)) == 1, sorted(set(thresholds))
    assert max(s.cwnd for s in record if s.ssthresh is not None and s.time > record[-1].time - 0.05) > thresholds[0]


SAMPLED = '''
from tcplab import Netem

def test_sampled(hosts):
    with hosts.capture(sender=True) as cap:
        srv = hosts.server.listen(7788)
        client = hosts.client.connect(srv.address)
        peer = srv.accept()
        hosts.impair(c2s=Netem(rate_kbit=8000))
        sending = client.send(bytes(300_000), wait=False)
        assert peer.recv_exactly(300_000, timeout=30) == bytes(300_000)
        sending.wait(10)
    record = cap.trace.connection(port=7788).sender("client")
    assert record.sampled and record.source == "TCP_INFO sampled through sock_diag"
    assert len(record) >= 3 and all(s.snd_una is None for s in record), record
    assert [s.time for s in record] == sorted(s.time for s in record)
    assert {s.local for s in record} == {tuple(client.local)}
    assert record[-1].cwnd == client.info().snd_cwnd, (record[-1], client.info())
    assert record.at(record[-1].time + 1).cwnd == record[-1].cwnd
'''


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the seccomp wrapper knows x86_64's syscall numbers")
def test_without_perf_events_the_record_is_sampled(tmp_path):
    (tmp_path / "test_sampled.py").write_text(SAMPLED)
    junit = tmp_path / "j.xml"
    r = subprocess.run([sys.executable, str(HERE / "dockerlike.py"), "--no-perf", sys.executable, "-m", "pytest",
                        "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", str(tmp_path / "test_sampled.py")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:]
    assert [t.get("name") for t in ET.parse(junit).iter("testcase")] == ["test_sampled"]


def test_a_capture_not_asked_for_the_sender_record_says_how_to_ask(hosts):
    """The sender record costs a record per segment: a capture keeps it only with sender=True,
    and conn.sender() on one without says so and how to ask, instead of an empty record."""
    from tcplab import ConfigError
    from tcplab.observe.sender import probe_log
    with hosts.capture() as cap:
        srv = hosts.server.listen(7788)
        client = hosts.client.connect(srv.address)
        peer = srv.accept()
        client.sock.sendall(bytes(20_000))
        assert peer.recv_exactly(20_000, timeout=10)
        try:
            subscribed = bool(probe_log().subs)
        except Exception:
            subscribed = False
        assert not subscribed, "the sender tracepoint recorded for a capture that did not ask for it"
    with pytest.raises(ConfigError, match=r"not kept: .*hosts.capture\(sender=True\)"):
        cap.trace.connection(port=7788).sender("client")
    assert not cap.sender_path.exists()
