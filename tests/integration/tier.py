"""Run a command inside a course platform's resource tier, emulated with cgroups, and report its
wall time and peak memory (QEMU and everything else it starts included).

Gradescope's autograder containers get, by default, 0.5 of a CPU and 768 MB; a course may pick
bigger tiers such as 1 CPU and 1.5 GB.  This makes a cgroup below this process's own (the cpu
controller's CFS quota, the memory controller's limit; cgroup v1, or v2 where that is what the
machine has), runs the command in it, and removes the cgroup afterwards.

Usage: python tier.py --cpus 0.5 --memory-mb 768 [--report FILE] -- COMMAND [ARGS...]
Prints ``tier: cpus C, memory M MiB: exit E, wall W s, peak P MiB`` on stderr (and, with
--report, the same as JSON).  Exit status: the command's.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tcplab.cli import exit_on_sigterm
from tcplab.lab.vm import own_cgroup

V1 = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


def _own(controller: str) -> Path:
    """This process's cgroup folder for a v1 controller (tcplab's own reader of /proc/self/cgroup)."""
    d = own_cgroup(controller)
    if d is None or not d.is_relative_to(V1 / controller):
        raise SystemExit(f"tier: no cgroup v1 {controller} controller here")
    return d


class Tier:
    def __init__(self, cpus: float, memory_mb: int):
        name = f"tcplab-tier-{os.getpid()}"
        self.cpu = _own("cpu") / name
        self.mem = _own("memory") / name
        self.cpu.mkdir()
        self.mem.mkdir()
        (self.cpu / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (self.cpu / "cpu.cfs_quota_us").write_text(str(int(cpus * PERIOD_US)))
        limit = memory_mb * 1024 * 1024
        (self.mem / "memory.limit_in_bytes").write_text(str(limit))
        try:   # no swap beyond the limit, as in a container
            (self.mem / "memory.memsw.limit_in_bytes").write_text(str(limit))
        except OSError:
            pass

    def enter(self) -> None:
        """In the child, before exec."""
        for d in (self.cpu, self.mem):
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def peak_mb(self) -> float:
        return int((self.mem / "memory.max_usage_in_bytes").read_text()) / 2**20

    def oom_kills(self) -> int:
        for line in (self.mem / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def remove(self) -> None:
        from tcplab import until

        def gone(d: Path) -> bool:
            try:
                d.rmdir()
                return True
            except OSError:   # a task still in it (the command's leftovers): end it
                for pid in (d / "cgroup.procs").read_text().split():
                    try:
                        os.kill(int(pid), 9)
                    except ProcessLookupError:
                        pass
                return False
        for d in (self.cpu, self.mem):
            until(lambda: gone(d), 10, f"cgroup {d} to be empty and removed")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpus", type=float, required=True)
    ap.add_argument("--memory-mb", type=int, required=True)
    ap.add_argument("--report", type=Path)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    exit_on_sigterm()   # the clean-up below runs on SIGTERM too (cgroups, folders)
    cmd = [c for c in a.command if c != "--"] if a.command[:1] == ["--"] else a.command
    if not cmd:
        ap.error("give the command after --")
    tier = Tier(a.cpus, a.memory_mb)
    try:
        t0 = time.monotonic()
        rc = subprocess.run(cmd, preexec_fn=tier.enter).returncode
        wall = time.monotonic() - t0
        report = {"cpus": a.cpus, "memory_mb": a.memory_mb, "exit": rc, "wall_s": round(wall, 1),
                  "peak_mb": round(tier.peak_mb()), "oom_kills": tier.oom_kills()}
    finally:
        tier.remove()
    print(f"tier: cpus {a.cpus:g}, memory {a.memory_mb} MiB: exit {rc}, wall {report['wall_s']} s, "
          f"peak {report['peak_mb']} MiB, OOM kills {report['oom_kills']}", file=sys.stderr)
    if a.report:
        a.report.write_text(json.dumps(report))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
