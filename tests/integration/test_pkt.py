"""The scripted peer (tcplab pkt) on this kernel: scripts written here, the kernel's answers.

Each expected behaviour was first checked with packetdrill itself, built from google/packetdrill,
on the same kernel (docs/packetdrill.md); here a wrong line must fail at that line, for the reason
packetdrill gives, and nothing a script makes may outlive its run."""
import os
import re
import subprocess
import tempfile
import sys
from pathlib import Path

import pytest

from tcplab.lab.pkt import Config, run_script
from tcplab.lab.pkt_suite import ladder

REPO = Path(__file__).resolve().parents[2]
H8 = (REPO / "labs" / "tcp_h8_third_segment_with_a_wrong_ack.pkt").read_text()


def _run(tmp_path, text: str, name="t.pkt", v=4, **cfg):
    path = tmp_path / name
    path.write_text(text)
    return run_script(path, Config(ip_version=v, **cfg))


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tcplab", "pkt", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=120)


@pytest.mark.parametrize("v", [4, 6])
def test_a_wrong_expectation_fails_at_its_line_with_what_differs(tmp_path, v):
    wrong = H8.replace("   +0 > R 1001:1001(0)", "   +0 > R 1002:1002(0)")
    o = _run(tmp_path, wrong, v=v)
    line = next(i for i, ln in enumerate(wrong.splitlines(), 1) if "> R 1002" in ln)
    assert o.status == "fail" and o.line == line, o.message
    assert o.message.startswith(f"line {line}: seq: expected 1002, actual 1001"), o.message
    assert "expected: > R 1002:1002(0)" in o.message and "actual:   > R 1001:1001(0)" in o.message
    picture = ladder(o)
    assert f"{line}  <-- here" in picture and "|<---- . 1:1(0) ack 1001" in picture, picture


def test_a_segment_at_the_wrong_time_is_a_timing_error(tmp_path):
    late = H8.replace("   +0 > R 1001:1001(0)", " +.1 > R 1001:1001(0)")
    o = _run(tmp_path, late)
    assert o.status == "fail" and "timing error: expected outbound packet at" in o.message, o.message


def test_a_call_that_should_block_but_cannot_return_is_bounded(tmp_path):
    hang = H8.split("// segment 3")[0].replace("   +0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n", "")
    hang += "   +0...0.1 accept(3, ..., ...) = 4\n"      # no third segment ever comes: it cannot return
    o = _run(tmp_path, hang)
    assert o.status == "fail" and o.line == len(hang.splitlines()) and o.seconds < 10, o.message


def test_the_cli_is_a_drop_in_for_packetdrill(tmp_path):
    script = tmp_path / "bad.pkt"
    script.write_text(H8.replace("accept(3, ..., ...) = -1 EAGAIN", "accept(3, ..., ...) = -1 EINVAL"))
    r = _cli("--ip_version=ipv4", "--local_ip=192.168.0.1", "--remote_ip=192.0.2.1", "-D", "X=1", script)
    assert r.returncode == 1 and re.match(r"bad\.pkt:\d+: accept\(\) failed with EAGAIN .*expected EINVAL",
                                          r.stderr), r.stderr
    good = REPO / "labs" / "tcp_h7_synack_with_a_wrong_ack.pkt"
    assert _cli("--ip_version=ipv6", "--mtu=1520", good).returncode == 0


def test_what_it_does_not_run_is_refused_by_line_and_name(tmp_path):
    script = tmp_path / "md5.pkt"
    script.write_text(H8.replace("+0 < S 0:0(0) win 65535 <mss 1460>", "+0 < S 0:0(0) win 65535 <mss 1460,md5 abcd1234>"))
    r = _cli("--ip_version=ipv4", script)
    assert r.returncode == 4, r.stdout + r.stderr            # kselftest's "skip", never a pass
    assert re.match(r"md5\.pkt:\d+: TCP-MD5 \(RFC 2385\) is not supported", r.stderr), r.stderr


def test_a_folder_runs_both_ip_versions_over_workers(tmp_path):
    table = tmp_path / "runs.tsv"
    r = _cli(REPO / "labs", "-n", "2", "--tsv", table)
    assert r.returncode == 0, r.stdout + r.stderr
    scripts = sorted(p.name for p in (REPO / "labs").glob("*.pkt"))
    assert re.search(rf"^{2 * len(scripts)} passed, 0 failed, 0 refused in [\d.]+ s$", r.stdout, re.M), r.stdout
    rows = [ln.split("\t") for ln in table.read_text().splitlines()[1:]]
    assert sorted({row[0] for row in rows}) == scripts and {row[1] for row in rows} == {"ipv4", "ipv6"}
    assert {row[2] for row in rows} == {"pass"}


def test_nothing_a_script_makes_outlives_its_run(tmp_path):
    """Its namespace (with tun0 and its sysctls) goes with the run, and the files its helpers
    write under the runner's pid (the kernel's set_sysctls.py, nstat's history) are removed."""
    script = tmp_path / "leaves.pkt"
    knob = Path("/proc/sys/net/ipv4/tcp_syn_retries")
    root_value = knob.read_text().strip()
    mine = str(int(root_value) % 5 + 1)          # a value the machine does not have
    script.write_text(f"`echo x > /tmp/sysctl_restore_${{PACKETDRILL_PID}}.sh; nstat -n; "
                      f"sysctl -q net.ipv4.tcp_syn_retries={mine}`\n" + H8)
    before = set(os.listdir("/proc/self/ns"))
    code = ("import os, sys\nfrom pathlib import Path\nfrom tcplab.lab.pkt import Config, run_script\n"
            f"o = run_script(Path({str(script)!r}), Config(ip_version=4))\n"
            "print(o.status, os.getpid())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    status, pid = r.stdout.split()
    assert status == "pass", r.stderr
    assert not list(Path("/tmp").glob(f"sysctl_restore_{pid}.sh"))
    assert not list(Path(tempfile.gettempdir()).glob(f"tcplab-pkt-nstat-{pid}-*"))
    assert knob.read_text().strip() == root_value     # the script's sysctl died with its namespace
    assert set(os.listdir("/proc/self/ns")) == before
    assert "tun0" not in subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout


def test_a_failing_script_in_pytest_reads_like_a_lab(tmp_path):
    (tmp_path / "tcp_wrong.pkt").write_text("// lab: H8 points=2\n" +
                                            H8.replace("   +0 > R 1001:1001(0)", "   +0 > R 1002:1002(0)"))
    r = subprocess.run([sys.executable, "-m", "pytest", str(tmp_path), "-q", "-p", "no:cacheprovider",
                        f"--basetemp={tmp_path / 'bt'}", "-k", "ipv4"], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    out = r.stdout
    assert r.returncode == 1 and "tcp_wrong.pkt (IPv4) fail: line" in out, out[-3000:]
    assert "seq: expected 1002, actual 1001" in out and "<-- here" in out and "Traceback" not in out
    pcap = re.search(r"(\S+tcp_wrong\.pcap)", out)
    assert pcap and Path(pcap.group(1)).stat().st_size > 24, out[-2000:]


def test_ecn_marks_are_sent_and_checked_where_written(tmp_path):
    """[noecn] / [ect0] as packetdrill writes them: an injected segment carries the mark; an
    outbound one is checked only where the script writes one (the kernel's SYN-ACK is not ECT)."""
    marked = H8.replace("+0 < S 0:0(0) win 65535 <mss 1460>", "+0 < [ect0] S 0:0(0) win 65535 <mss 1460>")
    assert _run(tmp_path, marked.replace("+0 > S. 0:0(0) ack 1 <...>", "+0 > [noecn] S. 0:0(0) ack 1 <...>")).passed
    o = _run(tmp_path, marked.replace("+0 > S. 0:0(0) ack 1 <...>", "+0 > [ect0] S. 0:0(0) ack 1 <...>"))
    assert o.status == "fail" and "ip_ecn: expected 0x2 (ect0), actual 0x0" in o.message, o.message
    sent = [f for _, d, f, *_ in o.exchange if d == "<"]
    assert sent[0].tos & 3 == 2                  # the injected SYN went out marked


def test_a_fast_open_syn_with_data_gets_its_cookie_checked(tmp_path):
    """Fast Open as the kernel's suite runs it: the server's key set by sysctl, the peer's SYN
    carries the cookie (a -D name) and data; a wrong cookie is a cookie the kernel does not take."""
    script = """`sysctl -q net.ipv4.tcp_fastopen=0x70403 net.ipv4.tcp_fastopen_key=a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4`
    0 socket(..., SOCK_STREAM|SOCK_NONBLOCK, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 setsockopt(3, SOL_TCP, TCP_FASTOPEN, [1], 4) = 0
   +0 < S 0:10(10) win 32792 <mss 1460,sackOK,nop,nop,FO TFO_COOKIE,nop,nop>
   +0 > S. 0:0(0) ack 11 <mss 1460,nop,nop,sackOK>
   +0 accept(3, ..., ...) = 4
   +0 %{ assert (tcpi_options & TCPI_OPT_SYN_DATA) != 0, tcpi_options }%
   +0 read(4, ..., 512) = 10
"""
    defines = {"TFO_COOKIE": "3021b9d889017eeb"}
    assert _run(tmp_path, script, defines=defines).passed
    o = _run(tmp_path, script, defines={"TFO_COOKIE": "0000000000000000"})
    assert o.status == "fail" and "line 8: ack: expected 11, actual 1" in o.message, o.message
