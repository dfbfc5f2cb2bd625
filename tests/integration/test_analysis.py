"""tcplab analyze against Wireshark's own analysis (tshark), on captures of real transfers: loss
recovered by SACK, by three duplicate ACKs and by timeouts, a zero window, random loss over a
delayed wire, and a capture tcplab did not make (tcpdump's, microsecond pcap; and a pcapng)."""
import collections
import json
import shutil
import struct
import subprocess
import sys

import pytest

from tcplab import Drop, Netem
from tcplab.observe.analysis import COUNTS, DUPLICATE_ACK, RETRANSMISSION, analyse
from tcplab.observe.fastparse import read_pcap

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None,
                                reason="tshark is missing: sudo ci/setup --browser installs it")
FIELDS = {k: f"tcp.analysis.{v}" for k, v in {
    "retransmissions": "retransmission", "fast_retransmissions": "fast_retransmission",
    "spurious_retransmissions": "spurious_retransmission", "out_of_order": "out_of_order",
    "duplicate_acks": "duplicate_ack", "zero_windows": "zero_window",
    "zero_window_probes": "zero_window_probe", "keep_alives": "keep_alive",
    "window_updates": "window_update"}.items()}
PORT = 7788


def tshark_counts(path):
    """{(client port, server port) or stream: {count: n}} from tshark's expert flags."""
    cmd = ["tshark", "-n", "-r", str(path), "-Y", "tcp", "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.dstport",
           *sum((["-e", f] for f in FIELDS.values()), [])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    per = collections.defaultdict(collections.Counter)
    for line in out.splitlines():
        cols = line.split("\t")
        key = frozenset(cols[:2])
        per[key]
        for k, v in zip(FIELDS, cols[2:]):
            per[key][k] += bool(v)
    return per


def compare(path):
    """Per connection, tcplab's counts equal tshark's; returns tcplab's."""
    theirs = tshark_counts(path)
    mine = {frozenset((str(c.client[1]), str(c.server[1]))): c.counts() for c in analyse(read_pcap(path))}
    assert set(mine) == set(theirs), (sorted(map(sorted, mine)), sorted(map(sorted, theirs)))
    for key, counts in mine.items():
        diff = {k: (counts[k], theirs[key][k]) for k in FIELDS if counts[k] != theirs[key][k]}
        assert not diff, f"{path.name}: tcplab vs tshark {diff}"
    return list(mine.values())


def _bulk(hosts, n=200_000):
    srv = hosts.server.listen(PORT)
    c = hosts.client.connect(srv.address)
    peer = srv.accept()
    sending = c.send(bytes(n), wait=False)
    assert len(peer.recv_exactly(n, timeout=60)) == n
    sending.wait(60)
    return c, peer


def _both_pcaps(cap):
    return [cap.paths["client"], cap.paths["server"]]


@pytest.mark.parametrize("sack", [True, False], ids=["sack", "three-dupacks"])
def test_one_loss_in_a_bulk_transfer(hosts, sack):
    for h in hosts:
        h.sysctl("net.ipv4.tcp_sack", int(sack))
        h.sysctl("net.ipv4.tcp_recovery", int(sack))
        h.sysctl("net.ipv4.tcp_early_retrans", 0)
        h.rto_min(200)
    with hosts.capture() as cap:
        hosts.impair(drops=[Drop(">", "*", nth=4, payload=True)])
        _bulk(hosts)
    client_view, server_view = (compare(p)[0] for p in _both_pcaps(cap))
    assert client_view["retransmissions"] >= 1 and client_view["duplicate_acks"] >= 3, client_view
    if not sack:
        assert client_view["fast_retransmissions"] == 1, client_view


def test_timeouts(hosts):
    for h in hosts:
        h.sysctl("net.ipv4.tcp_early_retrans", 0)
    with hosts.capture() as cap:
        hosts.impair(drops=[Drop(">", "*", nth=1, payload=True, count=12)])
        _bulk(hosts)
    client_view = compare(cap.paths["client"])[0]
    compare(cap.paths["server"])
    assert client_view["retransmissions"] >= 3, client_view


def _zero_window(hosts):
    """A server that stops reading until the client has probed its closed window twice; returns
    the capture."""
    import socket
    from tcplab import until
    with hosts.capture() as cap:
        srv = hosts.server.listen(PORT)
        srv.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c = hosts.client.connect(srv.address)
        peer = srv.accept()
        sending = c.send(bytes(100_000), wait=False)
        until(lambda: c.info().backoff >= 2, 20, "two zero-window probes")
        peer.recv_exactly(100_000, timeout=30)
        sending.wait(30)
    return cap


def test_zero_window(hosts):
    cap = _zero_window(hosts)
    (client_view,) = compare(cap.paths["client"])
    compare(cap.paths["server"])
    (mine,) = analyse(read_pcap(cap.paths["client"]))
    counts = mine.counts()
    assert counts["zero_windows"] >= 1 and counts["window_updates"] >= 1, counts
    # Linux's probes: keep-alives to Wireshark, sent while the window is zero
    assert counts["linux_zero_window_probes"] >= 2 and counts["keep_alives"] >= counts["linux_zero_window_probes"]


def test_random_loss_over_a_delayed_wire(hosts):
    hosts.impair(both=Netem(loss=3, delay=5))
    with hosts.capture() as cap:
        _bulk(hosts, 400_000)
    for p in _both_pcaps(cap):
        compare(p)


def _holds_ack_of(pcap, n: int) -> bool:
    """The pcap holds the server's ACK of ``n`` bytes from the client."""
    try:
        segments = read_pcap(pcap)
    except struct.error:            # tcpdump is between the writes of one record
        return False
    syn = next((s for s in segments if s.flags == {"SYN"}), None)
    return syn is not None and any(s.sport == PORT and s.ack == (syn.seq + 1 + n) % 2**32 for s in segments)


def test_a_capture_tcplab_did_not_make(hosts, tmp_path):
    """tcpdump's own pcap (microsecond timestamps) of a transfer with a lost data segment and a
    lost ACK, and the same file as
    pcapng (read through Scapy): the same counts as tshark's."""
    from tcplab import until
    pcap = tmp_path / "tcpdump.pcap"
    dump = hosts.client.popen(["tcpdump", "-i", "eth0", "-n", "-U", "--immediate-mode", "-w", str(pcap), "tcp"])
    until(lambda: pcap.exists() and pcap.stat().st_size >= 24, 10, "tcpdump to start writing")
    hosts.impair(drops=[Drop(">", "*", nth=4, payload=True), Drop("<", ".", nth=6)])
    _bulk(hosts, 100_000)
    # tcpdump stops at SIGTERM without reading what its ring still holds: it once wrote 4 of the
    # transfer's 108 frames.  Stop it once its file has the server's ACK of the last byte.
    until(lambda: _holds_ack_of(pcap, 100_000), 10, "tcpdump to write the ACK of the last byte")
    dump.close()
    mine = compare(pcap)
    assert sum(c["retransmissions"] for c in mine) >= 1
    ng = tmp_path / "tcpdump.pcapng"
    subprocess.run(["tshark", "-r", str(pcap), "-F", "pcapng", "-w", str(ng)], check=True, capture_output=True)
    assert compare(ng) == mine


def test_analyze_command_prints_json_and_a_table(hosts, tmp_path):
    from tcplab.cli import main
    with hosts.capture() as cap:
        hosts.impair(drops=[Drop(">", "*", nth=4, payload=True)])
        _bulk(hosts, 50_000)
    r = subprocess.run([sys.executable, "-m", "tcplab", "analyze", "--json",
                        str(cap.paths["client"])], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (conn,) = json.loads(r.stdout)["connections"]
    assert conn["server"].endswith(f":{PORT}") and set(COUNTS) <= set(conn) and conn["retransmissions"] >= 1
    r = subprocess.run([sys.executable, "-m", "tcplab", "analyze", str(cap.paths["client"])],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "retransmissions" in r.stdout.splitlines()[0]
    assert main(["analyze", str(tmp_path / "missing.pcap")]) == 2


def _tsg_marks(svg: str) -> collections.Counter:
    """The marks of the graph of the whole connection (the loss episodes' panels repeat some)."""
    import re
    overview = svg.split('<g class="episode"')[0]
    return collections.Counter(re.findall(r'<(?:path|line|circle|rect|polyline) class="([\w-]+)"', overview))


def test_time_sequence_graph_marks_what_the_analysis_counts(hosts, tmp_path):
    """The graph of a transfer with one lost data segment (SACK): one red retransmission, a tick
    per duplicate ACK, the SACK blocks, one ACK line and one window line; it renders to PNG."""
    from tcplab.cli import main
    for h in hosts:
        h.sysctl("net.ipv4.tcp_early_retrans", 0)
        h.rto_min(200)
    with hosts.capture() as cap:
        hosts.impair(drops=[Drop(">", "*", nth=4, payload=True)])
        _bulk(hosts)
    out = tmp_path / "tsg.svg"
    assert main(["tsg", str(cap.paths["client"]), "--svg", str(out)]) == 0
    marks = _tsg_marks(out.read_text())
    (conn,) = analyse(read_pcap(cap.paths["client"]))
    client_rtx = sum(1 for s, m in zip(conn.segments, conn.bits) if s.sport != PORT and s.length and m & RETRANSMISSION)
    server_dupacks = sum(1 for s, m in zip(conn.segments, conn.bits) if s.sport == PORT and m & DUPLICATE_ACK)
    assert marks["retransmission"] == client_rtx >= 1, marks
    assert marks["dupack"] == server_dupacks >= 3, marks
    assert marks["sack"] >= 3 and marks["ack-line"] == 1 and marks["window-line"] == 1, marks
    assert marks["segment"] >= 100
    rsvg = shutil.which("rsvg-convert")
    if rsvg:
        png = tmp_path / "tsg.png"
        subprocess.run([rsvg, str(out), "-o", str(png)], check=True, timeout=60)
        assert png.stat().st_size > 10_000


def test_time_sequence_graph_of_a_zero_window(hosts, tmp_path):
    from tcplab.cli import main
    cap = _zero_window(hosts)
    pcap = tmp_path / "copy.pcap"
    shutil.copy(cap.paths["client"], pcap)
    assert main(["tsg", str(pcap)]) == 0                      # beside the pcap by default
    marks = _tsg_marks((tmp_path / "copy-tsg.svg").read_text())
    (conn,) = analyse(read_pcap(pcap))
    assert marks["zero-window"] == conn.counts()["zero_windows"] >= 1, marks


def test_time_sequence_graph_of_heavy_loss_has_a_panel_per_episode_and_zooms_in_chromium(hosts, tmp_path):
    """A retransmitted SYN and two loss episodes far apart, captured by tcpdump (not tcplab):
    the static graph marks every segment Wireshark's analysis flags (the SYN too), shades each
    episode and draws it again in a panel of its own; the page (--html) holds Plotly itself
    (nothing fetched), renders in headless Chromium, and zooms onto an episode as its zoom box
    does (Plotly.relayout), the time axis then reading the episode's seconds."""
    import re
    from tcplab import until
    from tcplab.cli import main
    exe = shutil.which("chromium")
    if exe is None or shutil.which("tcpdump") is None:
        pytest.skip("Chromium or tcpdump is missing: sudo ci/setup --browser")
    pcap = tmp_path / "other.pcap"
    hosts.impair(drops=[Drop(">", "S", nth=1), Drop("<", "*", nth=30, payload=True, count=3),
                        Drop("<", "*", nth=150, payload=True, count=4)])
    # --immediate-mode -U: each frame written as it comes (tcpdump drops what its ring holds at a signal)
    dump = hosts.client.popen(["tcpdump", "-i", hosts.client.ifname, "-n", "-s", "128", "--immediate-mode", "-U",
                               "-w", str(pcap)], name="td")
    until(lambda: "listening on" in dump.stderr, 10, "tcpdump to listen")
    srv = hosts.server.listen(PORT)
    client = hosts.client.connect(srv.address, timeout=10)
    peer = srv.accept()
    sending = peer.send(bytes(400_000), wait=False)
    assert len(client.recv_exactly(400_000, timeout=30)) == 400_000
    sending.wait(10)
    client.close()
    peer.close()
    client.wait_state("TIME_WAIT")
    import os
    import signal

    def whole():       # the file holds the server's FIN and the client's ACK of it
        try:
            segs = read_pcap(pcap)
        except Exception:
            return False
        fin = [i for i, s in enumerate(segs) if s.sport == PORT and "FIN" in s.flags]
        return bool(fin) and any(s.dport == PORT and "ACK" in s.flags for s in segs[fin[0] + 1:])
    until(whole, 10, "tcpdump to write the whole exchange")
    os.killpg(dump.proc.pid, signal.SIGINT)
    dump.wait(10)
    svg, page = tmp_path / "g.svg", tmp_path / "g.html"
    assert main(["tsg", str(pcap), "--svg", str(svg), "--html", str(page)]) == 0
    (conn,) = analyse(read_pcap(pcap))
    flagged = sum(1 for m in conn.bits if m & RETRANSMISSION)
    text = svg.read_text()
    overview = text.split('<g class="episode"')[0]
    assert overview.count('class="retransmission"') == flagged >= 2, (overview.count('class="retransmission"'), flagged)
    episodes = re.findall(r'<g class="episode" data-episode="(\d+)">', text)
    assert len(episodes) >= 2 and overview.count('class="episode-band"') == len(episodes)
    rsvg = shutil.which("rsvg-convert")
    if rsvg:
        subprocess.run([rsvg, str(svg), "-o", str(tmp_path / "g.png")], check=True, timeout=60)
    html = page.read_text()
    assert not re.search(r'<script[^>]+src="https?:', html), "the page fetches a script: it would not open offline"
    first = re.search(r'loss episode 1: ([\d.]+) s to ([\d.]+) s', text)
    a, b = float(first.group(1)), float(first.group(2))
    probe = html.replace("</body>", """<script>
      const gd = document.getElementById('tcplab-tsg');
      Plotly.relayout(gd, {'xaxis.range': [%f, %f]}).then(() => {
        document.body.setAttribute('data-range', JSON.stringify(gd.layout.xaxis.range));
        document.body.setAttribute('data-ticks', [...document.querySelectorAll('.xtick text')].map(e => e.textContent).join('|'));
        document.body.setAttribute('data-traces', String(document.querySelectorAll('.scatterlayer .trace').length));
      });
    </script></body>""" % (a, b))
    (tmp_path / "probe.html").write_text(probe)
    dom = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=8000", "--dump-dom",
                          (tmp_path / "probe.html").as_uri()], capture_output=True, text=True, timeout=120).stdout
    got = re.search(r'data-range="\[([^,]+),([^\]]+)\]"', dom)
    assert got and abs(float(got.group(1)) - a) < 1e-6 and abs(float(got.group(2)) - b) < 1e-6, dom[:1500]
    ticks = [float(t.replace("\u2212", "-")) for t in re.search(r'data-ticks="([^"]*)"', dom).group(1).split("|") if t]
    assert ticks and all(a - 1e-9 <= t <= b + 1e-9 for t in ticks), ticks
    assert int(re.search(r'data-traces="(\d+)"', dom).group(1)) >= 5
