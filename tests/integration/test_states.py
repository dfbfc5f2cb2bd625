"""The kernel's state timeline: exact per topology although the tracepoint is machine-wide,
nothing left in the kernel, and a clear skip where the kernel has no tracing."""
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.needs_root
HERE = Path(__file__).parent

SAME_PORTS = '''
import pytest

@pytest.mark.parametrize("n", range(12))
def test_same_ports_everywhere(hosts, n, record_property):
    with hosts.capture(sender=True) as cap:
        server = hosts.server.listen(port=7788)
        client = hosts.client.connect(server.address, port=40000)   # the same 4-tuple ports in every lab
        peer = server.accept()
        client.send(b"x" * 50000)
        assert peer.recv_exactly(50000) == b"x" * 50000
        client.close()
        assert peer.recv_eof() == b""
        peer.close()
        peer.wait_state("CLOSED")
    conn = cap.trace.connection(port=7788)
    assert conn.states("client").path() == ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT"]
    assert conn.states("server").path() == ["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]
    mine = {hosts.client.addr(4), hosts.server.addr(4), hosts.client.addr(6), hosts.server.addr(6)}
    assert all(e.local[0] in mine for e in cap.kernel.changes)
    # the listener (CLOSED -> LISTEN), the client's 5 changes, the child's 5: nobody else's
    assert len(cap.kernel.changes) == 1 + 5 + 5, cap.kernel.changes
    record_property("foreign", str(cap.kernel.foreign))
    # the sender record (tcp:tcp_probe, machine-wide too): this lab's two sockets and no other
    for side, local in (("client", tuple(client.local)), ("server", tuple(peer.local))):
        record = conn.sender(side)
        assert record and not record.sampled and {s.local for s in record} == {local}, record[:3]
    assert {s.local[0] for s in cap.kernel.samples} <= mine
'''


def test_attribution_is_exact_under_four_workers(tmp_path):
    """12 labs on 4 xdist workers, every one on ports 40000 -> 7788: each sees exactly its own 10
    state changes and its own sender samples, while the machine-wide tracepoints delivered other
    labs' records to it too."""
    (tmp_path / "test_same.py").write_text(SAME_PORTS)
    junit = tmp_path / "j.xml"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "4",
                        f"--junitxml={junit}", "-o", "junit_family=xunit1", str(tmp_path / "test_same.py")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:]
    foreign = [int(p.get("value")) for p in ET.parse(junit).iter("property") if p.get("name") == "foreign"]
    assert len(foreign) == 12
    assert sum(foreign) > 0, "no lab saw another lab's state changes: the test did not run labs at once"


def test_recorder_leaves_nothing_in_the_kernel():
    """perf fds (the state record's and the sender record's) die with their process: no tracefs
    mount and no tracing instance appear."""
    before = Path("/proc/self/mountinfo").read_text().count("tracefs")
    code = ("from tcplab.observe.states import state_log; from tcplab.observe.sender import probe_log; "
            "import os, signal; n = len(state_log().reader.fds) + len(probe_log().reader.fds); "
            "print(n, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == -9 and int(r.stdout) >= 2
    assert Path("/proc/self/mountinfo").read_text().count("tracefs") == before


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the seccomp wrapper knows x86_64's syscall numbers")
def test_without_tracing_a_lab_that_needs_states_skips_with_the_reason(tmp_path):
    (tmp_path / "test_needs.py").write_text(SAME_PORTS.replace("range(12)", "range(1)"))
    r = subprocess.run([sys.executable, str(HERE / "dockerlike.py"), "--no-perf", sys.executable, "-m", "pytest",
                        "-rs", "-p", "no:cacheprovider", str(tmp_path / "test_needs.py")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "1 skipped" in r.stdout
    assert "the kernel's state timeline is not available: perf_event_open on the tracepoint " \
           "sock/inet_sock_set_state failed: Operation not permitted" in r.stdout
    assert "tcplab: state timeline: unavailable" in r.stdout


def test_the_tracepoints_record_only_while_a_capture_subscribes():
    """An idle process's perf events are disabled: other labs' segments (tcp:tcp_probe fires for
    each one) cost it nothing.  The kernel's write position in the per-CPU buffers moves only
    while a capture records."""
    import struct
    from tcplab import Topology
    from tcplab.observe.sender import probe_log
    from tcplab.observe.states import state_log
    from tcplab.errors import Unsupported
    try:
        logs = [state_log(), probe_log()]
    except Unsupported as exc:
        pytest.skip(f"no tracing here: {exc}")

    def heads():
        return [sum(struct.unpack_from("Q", m, 1024)[0] for m in log.reader.maps) for log in logs]

    def exchange(topo):
        server = topo.server.listen()
        client = topo.client.connect(server.address)
        peer = server.accept()
        client.send(b"x" * 100000)
        assert peer.recv_exactly(100000) == b"x" * 100000
        client.close()
        peer.close()

    with Topology() as topo:
        before = heads()
        exchange(topo)
        assert heads() == before, "records were written while nobody subscribed"
        with topo.capture():
            exchange(topo)
        states_only = heads()
        assert states_only[0] > before[0], "a capture's state changes were not written"
        assert states_only[1] == before[1], "sender records were written for a capture that did not ask"
        with topo.capture(sender=True):
            exchange(topo)
        after = heads()
        assert all(a > b for a, b in zip(after, states_only)), "a capture's records were not written"
        exchange(topo)
        assert heads() == after, "records were written after the capture stopped"
