"""The command line: --help for every command, the same exit codes everywhere (0 ok, 1 a check
failed, 2 usage error, 4 environment not usable), and the README's commands run for real."""
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from tcplab.cli import COMMANDS

REPO = Path(__file__).resolve().parents[2]


def tcplab(*args, cwd=REPO, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "tcplab", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, **kw)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command):
    r = tcplab(command, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: tcplab {command}")


def test_usage_errors_exit_2():
    assert tcplab().returncode == 2
    assert tcplab("no-such-command").returncode == 2
    r = tcplab("soak", "-N", "0")
    assert r.returncode == 2 and "-N 0: give at least 1 run" in r.stderr
    r = tcplab("coverage", "--also", "nothing-here")
    assert r.returncode == 2 and "give LABEL=PATH" in r.stderr
    assert tcplab("--help").returncode == 0


def test_the_console_script_is_the_same_cli():
    exe = Path(sys.executable).with_name("tcplab")
    if not exe.exists():
        pytest.skip("no console script next to this interpreter (tcplab not pip-installed here)")
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "exit codes: 0 ok, 1 a check failed, 2 usage error, 4 environment" in r.stdout


def test_doctor_as_root_exits_0_and_without_namespaces_exits_4():
    r = tcplab("doctor")
    assert r.returncode == 0, r.stdout
    assert "OK      mode: root" in r.stdout
    if platform.machine() != "x86_64":
        pytest.skip("the seccomp wrapper knows x86_64's syscall numbers")
    # Docker's profile without QEMU (an empty PATH): nothing works, and it says what would
    empty = Path(tempfile.mkdtemp(prefix="tcplab-nopath-"))
    try:
        r = subprocess.run([sys.executable, str(Path(__file__).parent / "dockerlike.py"), sys.executable, "-m",
                            "tcplab", "doctor"], capture_output=True, text=True, timeout=60, env={"PATH": str(empty)})
    finally:
        empty.rmdir()
    assert r.returncode == 4, r.stdout
    assert "MISSING mode: no lab network can be built here (network namespaces: unshare(CLONE_NEWNET) was refused" \
        in r.stdout and "sudo ci/setup --vm" in r.stdout and "qemu" in r.stdout.lower()


def test_doctor_as_root_tells_what_the_labs_then_do(tmp_path):
    """Root: doctor's verdict and absent items explain the state and loss labs' run (which
    need the kernel's record and nftables)."""
    from .doctor_check import doctor_explains_the_run
    doctor = tcplab("doctor")
    labs = subprocess.run([sys.executable, "-m", "pytest", "labs/test_states.py", "labs/test_loss.py", "-rs", "-q",
                           "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'bt'}"], cwd=REPO,
                          capture_output=True, text=True, timeout=280)
    doctor_explains_the_run(doctor.stdout, doctor.returncode, labs.stdout + labs.stderr, labs.returncode)


def test_doctor_without_nft_tells_what_the_labs_then_do(tmp_path):
    """A machine made to lack nft (/dev/null over it, in a private mount namespace): doctor names
    it absent with its package, and the loss labs skip for that reason and no other."""
    from .doctor_check import doctor_explains_the_run
    if not Path("/usr/sbin/nft").exists():
        pytest.skip("nft is not at /usr/sbin/nft here: sudo ci/setup installs it")

    def hidden(*argv):
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               'mount --bind /dev/null /usr/sbin/nft && exec "$@"', "hide-nft", *argv], cwd=REPO,
                              capture_output=True, text=True, timeout=280)
    doctor = hidden(sys.executable, "-m", "tcplab", "doctor")
    assert "absent  nftables CLI: the nft command is not installed" in doctor.stdout, doctor.stdout
    labs = hidden(sys.executable, "-m", "pytest", "labs/test_loss.py", "labs/test_handshake.py", "-rs", "-q",
                  "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'bt'}")
    assert "SKIPPED" in labs.stdout and " passed" in labs.stdout, labs.stdout
    doctor_explains_the_run(doctor.stdout, doctor.returncode, labs.stdout + labs.stderr, labs.returncode)


def test_coverage_from_a_junit_file(tmp_path):
    junit = tmp_path / "labs.xml"
    r = subprocess.run([sys.executable, "-m", "pytest", "labs/test_reset.py", "-q", "-p", "no:cacheprovider",
                        f"--junitxml={junit}", f"--basetemp={tmp_path / 'bt'}"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]
    out = tmp_path / "coverage.md"
    r = tcplab("coverage", "--junit", str(junit), "--out", str(out))
    assert r.returncode == 1        # only R2 is covered by this selection: a check failed
    assert "| R2 |" in out.read_text() and "every claim covered by a passing lab: NO" in r.stdout


def test_soak_counts_failures_and_keeps_their_artifacts(tmp_path):
    labs = tmp_path / "labs"
    labs.mkdir()
    (labs / "test_flaky.py").write_text(textwrap.dedent("""
        import os

        def test_ok(hosts):
            pass

        def test_fails_on_the_second_run(hosts, tmp_path_factory):
            marker = os.path.join(os.environ["SOAK_STATE"], "ran")
            if os.path.exists(marker):
                with hosts.capture():
                    srv = hosts.server.listen(port=7788)
                    hosts.client.connect(srv.address)
                    srv.accept()
                assert False, "second run"
            open(marker, "w").close()
    """))
    state = tmp_path / "state"
    state.mkdir()
    r = tcplab("soak", "-N", "2", "--out", str(tmp_path / "out"), "--", str(labs), "-p", "no:randomly",
               env={**os.environ, "SOAK_STATE": str(state)})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "run 1/2: 2 passed" in r.stdout
    assert "soak: 2 runs of 2 tests; 1 failed runs" in r.stdout
    assert "       1  " in r.stdout and "test_fails_on_the_second_run" in r.stdout
    assert not (tmp_path / "out" / "run-001").exists()                  # green runs are not kept
    kept = list((tmp_path / "out" / "run-002" / "artifacts").iterdir())
    assert len(kept) == 1
    assert "second run" in (kept[0] / "failure.txt").read_text()
    assert sorted(p.name for p in kept[0].glob("*.pcap")) == ["capture-client.pcap", "capture-server.pcap"]


@pytest.mark.alone   # it compares what every process on the machine holds, before and after
def test_faults_script_runs_one_fault_and_checks_what_is_left(tmp_path):
    r = subprocess.run([sys.executable, "ci/faults.py", "--only", "tcpdump", "--no-final-run"], cwd=REPO,
                       capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK  tcpdump-missing" in r.stdout and "0 fault(s) with a problem" in r.stdout


@pytest.mark.alone   # it boots a VM
def test_sigterm_to_tcplab_vm_leaves_no_folder_and_no_qemu(tmp_path):
    """SIGTERM (a CI job cancelled, `timeout`) ends `tcplab vm` like Ctrl-C: QEMU is killed and
    the VM's work folder removed; before, Python died on the spot and both stayed."""
    import signal
    from tcplab import until
    from tcplab.lab.vm import VMError, default_kernel
    try:
        default_kernel()
    except VMError as exc:
        pytest.skip(str(exc))
    proc = subprocess.Popen([sys.executable, "-m", "tcplab", "vm", "--", "-q", "tests/unit/test_docs.py"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        for line in proc.stdout:
            if "[tcplab vm] booting" in line:
                break
        work = list(tmp_path.glob("tcplab-vm-*"))
        assert len(work) == 1
        until(lambda: _qemu_using(work[0]), 30, "QEMU to start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not work[0].exists() and not list(tmp_path.iterdir())
    assert not _qemu_using(work[0])


def _qemu_using(folder) -> bool:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(folder).encode() in cmdline.read_bytes():
                return True
        except OSError:
            pass
    return False
