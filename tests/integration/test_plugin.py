"""The installed pytest plugin: labs in any folder, with nothing copied, and loaded once here."""
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

LAB = '''
"""A course's own lab, outside tcplab's checkout."""
import pytest


@pytest.mark.lab("H1", points=2)
def test_handshake_in_a_course_repo(hosts, family):
    with hosts.capture() as cap:
        server = hosts.server.listen(port=7788, family=family)
        hosts.client.connect(server.address)
        server.accept()
    cap.trace.connection(port=7788).expect("""
        > S 0:0(0)
        < S. 0:0(0) ack 1
        > . 1:1(0) ack 1
    """)
'''


def _pytest(cwd, *args):
    return subprocess.run([sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider"], cwd=cwd,
                          capture_output=True, text=True, timeout=180)


def test_a_lab_in_a_folder_outside_the_checkout_passes(tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    (course / "test_my_lab.py").write_text(LAB)
    r = _pytest(course, "-q", f"--basetemp={tmp_path / 'bt'}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "2 passed" in r.stdout
    assert list(course.iterdir()) == [course / "test_my_lab.py"]   # nothing copied or written there


def test_fixtures_are_listed_with_their_docstrings(tmp_path):
    (tmp_path / "test_x.py").write_text("def test_x(hosts):\n    pass\n")
    r = _pytest(tmp_path, "--fixtures", "-q")
    assert r.returncode == 0, r.stderr
    for name, doc in (("hosts", "Client and server hosts on a wire"),
                      ("tcplab_workdir", "Where captures (pcap) and program output of one test go"),
                      ("family", "Each lab runs over IPv4 and IPv6")):
        block = r.stdout.split(f"\n{name} ", 1)
        assert len(block) == 2 and doc in block[1].split("\n\n")[0], f"{name} missing:\n{r.stdout[-3000:]}"


def test_the_checkout_loads_the_plugin_once():
    r = _pytest(REPO, "--trace-config", "--co", "-q", "labs/test_reset.py")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    registered = [ln for ln in r.stdout.splitlines() if "PLUGIN registered" in ln and "plugin.py" in ln
                  and "fixtures" in ln]
    assert len(registered) == 1, "\n".join(registered)


BAD_LAB = '''
from tcplab import Netem

HANDSHAKE = """
    > S 0:0(0)
    < S. 0:0(0) ack 1
"""


def test_bad_script(hosts):
    with hosts.capture() as cap:
        server = hosts.server.listen(port=7788)
        hosts.client.connect(server.address)
        server.accept()
    cap.trace.connection(port=7788).expect(HANDSHAKE + "> Q 1:1(0) ack 1")


def test_bad_value(hosts):
    hosts.impair(both=Netem(loss=150))
'''


def test_errors_in_a_labs_own_text_point_at_the_lab(tmp_path):
    (tmp_path / "test_bad.py").write_text(BAD_LAB)
    r = _pytest(tmp_path, "-q", f"--basetemp={tmp_path / 'bt'}")
    assert r.returncode == 1
    out = r.stdout
    assert "E       tcplab.errors.ConfigError: expected exchange, line 4 '> Q 1:1(0) ack 1': unknown TCP " \
           "flag letter(s) 'Q'" in out
    assert "test_bad.py:15: ConfigError" in out                     # the lab's line
    assert "E       tcplab.errors.ConfigError: loss=150 is out of range: a percentage from 0 to 100" in out
    assert "test_bad.py:19: ConfigError" in out
    assert "tcplab/observe/expect.py" not in out and "tcplab/wire/impair.py" not in out, out
