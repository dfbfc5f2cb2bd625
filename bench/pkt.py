#!/usr/bin/env python3
"""Benchmark: `tcplab pkt` against packetdrill on a folder of packetdrill scripts, in one run.

1. packetdrill runs every script of the folder one after another, as the kernel's ksft_runner.sh
   runs it (`unshare -n packetdrill ARGS SCRIPT`, IPv4 then IPv6 unless a script names one): the
   baseline, and which runs pass under packetdrill here.
2. The runs packetdrill passes and tcplab does not refuse (the core), through `tcplab pkt -n 2`
   in one command, against packetdrill's serial time for the same runs.
3. Per-script overhead: a script of this project's with no waits in it (a handshake and a
   close), run ROUNDS times by each, one process per run (a drop-in for packetdrill), and by
   `tcplab pkt` in one process (a folder of copies).

Prints each wall time and the ratios.  Needs packetdrill on the PATH (or --packetdrill PATH): it is
built from google/packetdrill's source; nothing here installs it.
Usage: sudo .venv/bin/python bench/pkt.py FOLDER [--packetdrill PATH] [-n ROUNDS]
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tcplab.lab.pkt_names import refusals  # noqa: E402
from tcplab.lab.pkt_suite import KSFT_DEFINES, runs_of  # noqa: E402
from tcplab.script import parse_script  # noqa: E402

KSFT_ARGS = {
    4: ["--ip_version=ipv4", "--local_ip=192.168.0.1", "--gateway_ip=192.168.0.1", "--netmask_ip=255.255.0.0",
        "--remote_ip=192.0.2.1"],
    6: ["--ip_version=ipv6", "--mtu=1520", "--local_ip=fd3d:0a0b:17d6::1", "--gateway_ip=fd3d:0a0b:17d6:8888::1",
        "--remote_ip=fd3d:fa7b:d17d::1"],
}
#: a handshake and a close, nothing to wait for: what one run costs beyond its script's timers
OVERHEAD_SCRIPT = """
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 < S 0:0(0) win 65535 <mss 1460>
   +0 > S. 0:0(0) ack 1 <...>
   +0 < . 1:1(0) ack 1 win 65535
   +0 accept(3, ..., ...) = 4
   +0 close(4) = 0
   +0 > F. 1:1(0) ack 1
   +0 < F. 1:1(0) ack 2 win 65535
   +0 > . 2:2(0) ack 2
"""


EXTRA: list[str] = []      # --tolerance_usecs=N, given to both


def packetdrill_run(pd: str, script: Path, v: int, log: list | None = None) -> tuple[bool, float]:
    defines = [f"-D{k}={val}" for k, val in KSFT_DEFINES[v].items()]
    t0 = time.monotonic()
    with subprocess.Popen(["unshare", "-n", pd, *KSFT_ARGS[v], *EXTRA, *defines, script.name], cwd=script.parent,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        out, err = proc.communicate(timeout=120)
    wall = time.monotonic() - t0
    # the kernel's set_sysctls.py leaves its restore script under packetdrill's pid (unshare execs
    # packetdrill, so it is this child's): removed, as tcplab pkt removes its own
    Path(f"/tmp/sysctl_restore_{proc.pid}.sh").unlink(missing_ok=True)
    r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if log is not None:
        last = ([ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip() and "sysctl: setting" not in ln]
                or [""])[0]
        log.append((script.name, f"ipv{v}", "pass" if r.returncode == 0 else "fail", f"{wall:.2f}",
                    last.replace("\t", " ")))
    return r.returncode == 0, wall


def tcplab(args: list[str], cwd: Path) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "tcplab", "pkt", *args], cwd=cwd, capture_output=True, timeout=900)
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--packetdrill", default=shutil.which("packetdrill") or shutil.which("packetdrill-ref"))
    ap.add_argument("-n", "--rounds", type=int, default=20)
    ap.add_argument("--tolerance_usecs", type=int, help="given to both (the kernel's runner: 14000 on a slow machine)")
    ap.add_argument("--tsv", type=Path, help="write packetdrill's outcome of every run here (and tcplab's beside it, "
                                            "FILE.tcplab.tsv)")
    a = ap.parse_args()
    if a.tolerance_usecs:
        EXTRA.append(f"--tolerance_usecs={a.tolerance_usecs}")
    if not a.packetdrill:
        print("bench/pkt.py: packetdrill is not on the PATH: build it from google/packetdrill and give "
              "--packetdrill PATH (the baseline must run in the same run)", file=sys.stderr)
        return 2
    runs = runs_of([a.folder])
    t0 = time.monotonic()
    passed, log = {}, []
    for script, v in runs:
        ok, wall = packetdrill_run(a.packetdrill, script, v, log)
        passed[(script, v)] = (ok, wall)
    if a.tsv:
        a.tsv.write_text("script\tip_version\tpacketdrill\tseconds\tpacketdrill's first line\n"
                         + "".join("\t".join(r) + "\n" for r in log))
        tcplab([str(a.folder), "-n", "2", "--tsv", str(a.tsv) + ".tcplab.tsv", *EXTRA], a.folder)
    serial_all = time.monotonic() - t0
    print(f"packetdrill, every run one after another: {len(runs)} runs, "
          f"{sum(ok for ok, _ in passed.values())} pass, {serial_all:.1f} s")
    core = [(s, v) for (s, v), (ok, _) in passed.items()
            if ok and not refusals(parse_script(s.read_text(), s))]
    pd_core = sum(passed[r][1] for r in core)
    print(f"core: {len(core)} runs packetdrill passes and tcplab runs; packetdrill one after another: {pd_core:.1f} s")
    with tempfile.TemporaryDirectory(prefix="tcplab-bench-pkt-") as tmp:
        core_dir = Path(tmp) / "core"
        core_dir.mkdir()
        for s in {s for s, _ in core}:           # the core scripts, with the helpers they call
            shutil.copy(s, core_dir / s.name)
        for helper in a.folder.iterdir():
            if helper.suffix != ".pkt" and helper.is_file():
                shutil.copy(helper, core_dir / helper.name)
        ours = tcplab([str(core_dir), "-n", "2", *EXTRA], core_dir)
        print(f"tcplab pkt -n 2, the core scripts in one command: {ours:.1f} s")
        print(f"tcplab pkt -n 2 / packetdrill serial (core): {ours / pd_core:.2f}x")

        one = Path(tmp) / "overhead"
        one.mkdir()
        (one / "handshake_close.pkt").write_text(OVERHEAD_SCRIPT)
        for i in range(a.rounds):
            (one / f"copy{i:03d}.pkt").write_text(OVERHEAD_SCRIPT)
        pd_walls = [packetdrill_run(a.packetdrill, one / "handshake_close.pkt", 4)[1] for _ in range(a.rounds)]
        t_proc = [tcplab(["--ip_version=ipv4", "handshake_close.pkt"], one) for _ in range(a.rounds)]
        for f in one.glob("handshake_close.pkt"):
            f.unlink()
        t_folder = tcplab([str(one), "--ip_version=ipv4"], one)
    pd_ms, proc_ms, folder_ms = (1000 * sum(pd_walls) / a.rounds, 1000 * sum(t_proc) / a.rounds,
                                 1000 * t_folder / a.rounds)
    print(f"per run, a script with no waits ({a.rounds} runs): packetdrill {pd_ms:.0f} ms, "
          f"tcplab pkt one process per run {proc_ms:.0f} ms ({proc_ms / pd_ms:.1f}x), "
          f"tcplab pkt in one process {folder_ms:.0f} ms ({folder_ms / pd_ms:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
