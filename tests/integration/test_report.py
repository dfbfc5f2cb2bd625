"""The HTML report, opened in a real browser (headless Chromium): failed labs first, each with
its claims, points, wire, expected exchange, ladder SVG and pcap links; the ladder SVG alone; a
bulk transfer drawn as a time-sequence graph."""
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

LAB = '''
import pytest
from tcplab import Drop

HANDSHAKE = """
    > S 0:0(0)
    < S. 0:0(0) ack 1
    > . 1:1(0) ack 1
"""


@pytest.mark.lab("H1", "H2", points=5)
def test_handshake(hosts):
    with hosts.capture() as cap:
        server = hosts.server.listen(port=7788)
        hosts.client.connect(server.address)
        server.accept()
    cap.trace.connection(port=7788).expect(HANDSHAKE)


@pytest.mark.lab("H4", "R1", points=4)
def test_expects_the_textbook_but_the_syn_ack_is_lost(hosts):
    hosts.impair(drops=[Drop("<", "S.")])
    with hosts.capture() as cap:
        server = hosts.server.listen(port=7788)
        hosts.client.connect(server.address, timeout=10)
        server.accept(timeout=10)
    cap.trace.connection(port=7788).expect(HANDSHAKE)
'''


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("Chromium is missing: sudo ci/setup --browser")
    return exe


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    work = tmp_path_factory.mktemp("report")
    (work / "test_demo.py").write_text(LAB)
    out = work / "results"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={out / 'tmp'}",
                        f"--html={out / 'report.html'}", "--self-contained-html"], cwd=work,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout[-3000:]
    return out / "report.html"


def test_the_report_renders_its_diagrams_in_chromium(report, tmp_path):
    exe = _chromium()
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1300,1500"]
    dom = subprocess.run(base + ["--virtual-time-budget=5000", "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    # the results table is built by the report's JavaScript: these exist only if it ran
    rows = re.findall(r'<tbody class="results-table-row (\w+)" id="([^"]+)">(.*?)</tbody>', dom, re.S)
    assert [(r[0], r[1].split("::")[1]) for r in rows] == [                       # failed labs first
        ("failed", "test_expects_the_textbook_but_the_syn_ack_is_lost"), ("passed", "test_handshake")], dom[:2000]
    rows = [r[2] for r in rows]
    failed = rows[0]
    assert failed.count('class="tcplab-ladder"') == 1 and "tcplab-lost" in failed
    assert "expected &gt; . 1:1(0) ack 1" in failed                              # expected beside observed
    assert "H4 R1" in failed and ">4<" in failed                                  # claims and points columns
    assert "drop segment #1 matching '&lt; S.'" in failed                         # the wire
    links = re.findall(r'href="([^"]+\.pcap)"', failed)
    assert sorted(Path(x).name for x in links) == ["capture-client.pcap", "capture-server.pcap"]
    assert all((report.parent / x).is_file() for x in links)                      # relative, they resolve
    shot = tmp_path / "report.png"
    subprocess.run(base + [f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000        # a rendered page, not a blank one
    print(f"screenshot: {shot}")


def test_the_ladder_svg_is_valid_and_labels_every_segment(tmp_path):
    from tcplab import Drop, Topology
    from tcplab.report.ladder import ladder_svg
    with Topology(workdir=tmp_path) as topo:
        topo.impair(drops=[Drop("<", "S.")])
        with topo.capture() as cap:
            srv = topo.server.listen(7788)
            topo.client.connect(srv.address, timeout=10)
            srv.accept(timeout=10)
    conn = cap.trace.connection(port=7788)
    svg = ladder_svg(conn, notes={2: "expected > . 1:1(0) ack 1"})
    root = ET.fromstring(svg)                                   # well-formed XML
    ns = "{http://www.w3.org/2000/svg}"
    labels = [t.text for t in root.iter(f"{ns}text") if t.get("class") == "tcplab-seg"]
    assert labels == [conn.line(s)[2:] for s in conn.segments]
    assert len([p for p in root.iter(f"{ns}path") if p.get("class") == "tcplab-lost"]) == len(conn.lost()) == 1
    assert any(t.text == "expected > . 1:1(0) ack 1" for t in root.iter(f"{ns}text"))
    rsvg = shutil.which("rsvg-convert")
    if rsvg is None:
        pytest.skip("rsvg-convert is missing: sudo ci/setup --browser")
    src, png = tmp_path / "ladder.svg", tmp_path / "ladder.png"
    src.write_text(svg)
    subprocess.run([rsvg, str(src), "-o", str(png)], check=True, timeout=60)
    assert png.stat().st_size > 5_000


BULK = '''
import pytest
from tcplab import Drop


@pytest.mark.lab("T4", points=2)
def test_a_bulk_transfer_without_retransmissions(hosts):
    with hosts.capture(sender=True) as cap:
        srv = hosts.server.listen(7789)
        client = hosts.client.connect(srv.address)
        peer = srv.accept()
        hosts.impair(drops=[Drop(">", "*", nth=20, payload=True)])
        sending = client.send(bytes(300_000), wait=False)
        assert peer.recv_exactly(300_000, timeout=30)
        sending.wait()
    conn = cap.trace.connection(port=7789)
    assert not conn.lost(), "a segment was lost"
'''


def test_a_bulk_lab_is_drawn_as_a_time_sequence_graph(tmp_path):
    """A connection of hundreds of segments is a time-sequence graph with the kernel's cwnd, in
    the HTML report and, for a failure, beside its pcaps (a ladder would be hundreds of rows)."""
    exe = _chromium()
    (tmp_path / "test_bulk.py").write_text(BULK)
    out = tmp_path / "results"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={out / 'tmp'}",
                        f"--html={out / 'report.html'}", "--self-contained-html"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "a segment was lost" in r.stdout, r.stdout[-3000:]
    section = re.search(r"-+ tcplab tsg -+\n(\S+)", r.stdout)
    assert section and "tcplab ladder" not in r.stdout, r.stdout[-3000:]
    kept = Path(section.group(1))
    assert kept.name == "tsg-1.svg" and (kept.parent / "capture-client.pcap").is_file()
    assert (kept.parent / "capture-sender.json").is_file()
    svg = ET.fromstring(kept.read_text())
    classes = [e.get("class") for e in svg.iter()]
    assert classes.count("retransmission") >= 1 and "cwnd" in classes and "ssthresh" in classes
    dom = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--dump-dom", (out / "report.html").as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.count('class="tcplab-tsg"') == 1 and 'class="tcplab-ladder"' not in dom, dom[:2000]
    assert "time-sequence graph of the client's data" in dom
