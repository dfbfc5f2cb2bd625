"""The sandbox against hostile submissions, graded as a batch by ``tcplab grade``: each scores 0
with its output shown, leaves nothing behind, and the rest of the batch is graded (an honest
submission in the same batch gets its point)."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.needs_root
ASSIGNMENT = Path(__file__).parent / "hostile"

HOSTILE = {
    "honest": 'print("ok")\n',
    "hang": "import threading\nthreading.Event().wait()\n",
    "spin": "while True:\n    pass\n",
    "crash": "import ctypes\nctypes.string_at(0)\n",
    "forkbomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    "alloc2g": "data = bytearray(2 * 1024 ** 3)\nprint('ok')\n",
    "rootns": (
        "import os, subprocess, socket\n"
        "for argv in (['ip', 'link', 'add', 'evil0', 'type', 'dummy'], ['ip', 'route', 'add', '203.0.113.0/24', 'dev', 'eth0'],\n"
        "             ['ip', 'netns', 'add', 'evil'], ['nft', 'add', 'table', 'inet', 'evil'], ['nsenter', '-t', '1', '-n', 'true']):\n"
        "    try:\n"
        "        r = subprocess.run(argv, capture_output=True, text=True)\n"
        "        print(' '.join(argv[:3]), '->', r.returncode, r.stderr.strip()[:80])\n"
        "    except OSError as e:\n"
        "        print(' '.join(argv[:3]), '->', e)\n"
        "for path in ('/proc/sys/net/ipv4/ip_forward', '/proc/1/ns/net'):\n"
        "    try:\n"
        "        open(path, 'w').write('1')\n"
        "        print('wrote', path)\n"
        "    except OSError as e:\n"
        "        print('cannot write', path, e.strerror)\n"
        "try:\n"
        "    socket.socket(socket.AF_PACKET, socket.SOCK_RAW).bind(('lo', 0))\n"
        "    print('raw socket in the lab host: allowed')\n"
        "except OSError as e:\n"
        "    print('raw socket', e)\n"),
    "snoop": (
        "import os\n"
        f"secret = {str(ASSIGNMENT / 'tests' / 'test_run.py')!r}\n"
        "print('tests visible:', os.path.exists(secret))\n"
        "print('root dir:', sorted(os.listdir('/')))\n"
        "for p in ('/etc/shadow', '/root', '/work', '/tmp/escape'):\n"
        "    try:\n"
        "        open(p + ('' if p != '/tmp/escape' else ''), 'w' if p == '/tmp/escape' else 'r').close()\n"
        "        print('opened', p)\n"
        "    except OSError as e:\n"
        "        print('cannot open', p, e.strerror)\n"
        "open('/home/student/mine.txt', 'w').write('x')\n"),
}


def root_namespace() -> dict:
    """What no test may change (so it can be compared while other tests run in parallel)."""
    def run(*argv):
        return subprocess.run(argv, capture_output=True, text=True).stdout
    return {"links": run("ip", "-o", "link", "show"), "routes": run("ip", "route", "show", "table", "all"),
            "routes6": run("ip", "-6", "route", "show", "table", "all"), "netns": run("ip", "netns", "list"),
            "nft": run("nft", "list", "ruleset") if Path("/usr/sbin/nft").exists() else "",
            "forward": Path("/proc/sys/net/ipv4/ip_forward").read_text()}


def leftovers(work: Path, uids=range(61000, 62000)) -> list[str]:
    """Processes of this batch's sandboxes still alive: a sandbox uid (rootless: the user's), and a
    mount of this test's folder (each sandbox's home is bound from it), so other tests' sandboxes
    do not count."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            uid = int((d / "status").read_text().split("\nUid:")[1].split()[0])
            if uid in uids and str(work) in (d / "mountinfo").read_text():
                out.append(f"pid {d.name} uid {uid}: {(d / 'cmdline').read_bytes()[:80]!r}")
        except (OSError, IndexError):
            continue
    return out


SANDBOX_UIDS = range(61000, 62000)


def sandbox_files() -> list[str]:
    """Files a sandboxed program could have left in the machine's shared temporary folders: only
    a sandbox uid can write there from inside, so only its files are looked for (other tests
    write there too as root, at the same moment)."""
    out = []
    for top in ("/tmp", "/var/tmp", "/dev/shm", "/run"):
        for folder, dirs, files in os.walk(top):
            if folder == "/tmp":
                # pytest's own folders, where each test keeps its sandboxes' homes (owned by a
                # sandbox uid on purpose): those of other tests, running beside this one, are not
                # leftovers; a sandbox cannot write there (its /tmp is a tmpfs of its own)
                dirs[:] = [d for d in dirs if not d.startswith("pytest-of-")]
            for name in dirs + files:
                path = os.path.join(folder, name)
                try:
                    if os.lstat(path).st_uid in SANDBOX_UIDS:
                        out.append(path)
                except OSError:
                    continue
    return out


def write_class(folder: Path) -> Path:
    """One folder per hostile submission (and the honest one)."""
    for name, code in HOSTILE.items():
        (folder / name).mkdir(parents=True)
        (folder / name / "run.py").write_text(code)
    return folder


def check_hostile_grades(out: Path) -> None:
    """Each hostile submission scored 0 with what it did in its feedback; the honest one 1."""
    grades = {row["student"]: row for row in csv.DictReader(open(out / "grades.csv"))}
    assert set(grades) == set(HOSTILE)
    assert grades["honest"]["score"] == "1", "the honest submission in the same batch lost its point"
    outputs = {}
    for name in HOSTILE:
        if name == "honest":
            continue
        assert grades[name]["score"] == "0", f"{name} scored {grades[name]['score']}"
        outputs[name] = json.loads((out / name / "results.json").read_text())["tests"][0]["output"]
    assert "still running after 3 s" in outputs["hang"]
    assert "still running after" in outputs["spin"] or "CPU time limit" in outputs["spin"]
    assert "SIGSEGV" in outputs["crash"]
    assert "MemoryError" in outputs["alloc2g"]
    assert "still running after" in outputs["forkbomb"] or "killed" in outputs["forkbomb"]
    rootns = outputs["rootns"]
    assert "ip link add -> 2" in rootns and "ip route add -> 2" in rootns, rootns
    assert "cannot write /proc/sys/net/ipv4/ip_forward" in rootns
    assert "nft add table -> 1" in rootns or not Path("/usr/sbin/nft").exists(), rootns
    assert "raw socket in the lab host: allowed" in rootns            # the one capability it keeps
    snoop = outputs["snoop"]
    assert "tests visible: False" in snoop, snoop
    for p in ("/etc/shadow", "/root", "/work"):
        assert f"opened {p}\n" not in snoop + "\n", snoop
    assert "opened /tmp/escape" in snoop            # its own /tmp, gone with the sandbox
    assert not (Path("/tmp") / "escape").exists()


def test_hostile_submissions_score_zero_and_leave_nothing(tmp_path):
    subs = write_class(tmp_path / "class")
    # The grader's own temporary files (as root) go under a TMPDIR of this test's, so that they
    # can be told apart from the other tests'.
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    before = root_namespace()
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "tcplab", "grade", str(ASSIGNMENT), str(subs), "--out", str(out),
                        "-j", "2"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "TMPDIR": str(tmpdir)})
    after = root_namespace()
    assert r.returncode == 0, r.stderr
    check_hostile_grades(out)
    # nothing left: the root namespace as it was, no sandbox process, no sandbox file, and of the
    # grader's temporary files none
    assert after == before
    assert leftovers(tmp_path) == []
    assert sandbox_files() == []
    assert list(tmpdir.iterdir()) == []


def test_the_leftover_checks_see_a_running_sandbox_and_its_files(tmp_path):
    """The checks above can fail: while a sandboxed program runs, it is found, once stopped, not;
    a file a sandbox uid leaves in /dev/shm is found."""
    from tcplab import Sandbox, Topology, until
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "run.py").write_text("import os, threading\nos.fork()\nthreading.Event().wait()\n")
    with Topology(workdir=tmp_path / "w") as topo:
        box = Sandbox(topo.client, sub, tmp_path / "w")
        prog = box.start(["run.py"])
        until(lambda: len(leftovers(tmp_path)) >= 2, 10, "the sandboxed program and its child to run")
        box.close()
        prog.proc.wait(5)
        until(lambda: leftovers(tmp_path) == [], 5, "the sandbox's processes to be gone")
    planted = Path("/dev/shm") / f"tcplab-test-{os.getpid()}"
    planted.write_text("x")
    try:
        os.chown(planted, 61999, 61999)
        assert str(planted) in sandbox_files()
    finally:
        planted.unlink()


def test_sandbox_refuses_bad_settings(tmp_path):
    from tcplab import ConfigError, Sandbox, Topology
    with Topology(workdir=tmp_path) as topo:
        with pytest.raises(ConfigError, match="the sandbox grants only net_raw"):
            Sandbox(topo.client, tmp_path, tmp_path, caps=("net_admin",))
        with pytest.raises(ConfigError, match="no such folder"):
            Sandbox(topo.client, tmp_path / "nope", tmp_path)
