"""``tcplab vm``: run a pytest selection inside a VM booted from another kernel
(the engine is :mod:`tcplab.lab.vm`)."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from ..lab.vm import LINES, Guest, VMError, check_kernel, junit_counts, kernel_version, pytest_guest, resolve_kernel, run_vm


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="tcplab vm", description="run a pytest selection inside a VM booted "
                                 "from another kernel")
    ap.add_argument("--kernel", metavar="LINE|PATH",
                    help=f"a Linux line by name ({', '.join(LINES)}: Debian's package, fetched once) or a kernel "
                         "image's path (/boot/vmlinuz-VERSION, a build's arch/x86/boot/bzImage); default: the "
                         "newest /boot/vmlinuz-* with sch_netem")
    ap.add_argument("--netem", action="store_true",
                    help="the netem backend forced, slow labs run, and any skip counted as a failure "
                         "(CI's netem stage: ci/kernel-matrix --netem)")
    ap.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    ap.add_argument("--memory", default="", help="the guest's memory (default 1G, less under a cgroup memory limit; env TCPLAB_VM_MEMORY)")
    ap.add_argument("--cpus", type=int, default=0,
                    help="the guest's CPUs (default 2, or 1 where a CPU quota allows less; env TCPLAB_VM_CPUS)")
    ap.add_argument("--timeout", type=float, default=2400, help="seconds for the whole VM run")
    ap.add_argument("--boot-timeout", type=float, default=180, help="seconds until the guest must be up")
    ap.add_argument("--junit", type=Path, help="copy the guest's JUnit XML here")
    ap.add_argument("--artifacts", type=Path,
                    help="copy the pcaps and failure text of the guest's failed tests here")
    ap.add_argument("--keep", action="store_true", help="keep the VM's work directory (console log, results)")
    ap.add_argument("--command", action="store_true",
                    help="after --: a command to run in the guest instead of pytest (e.g. python -m tcplab pkt "
                         "FOLDER); its exit status is this run's")
    ap.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: pytest arguments")
    a = ap.parse_args(argv)
    extra = [x for x in a.pytest_args if x != "--"]
    env: dict[str, str] = {}
    if a.netem:
        env.update(TCPLAB_BACKEND="netem", TCPLAB_STRICT="1", TCPLAB_SLOW="1")   # slow: TIME_WAIT's 60 s
    if not extra:
        ap.error("give pytest arguments after --, e.g.  python -m tcplab vm -- labs/test_loss.py -q  (or --netem)")
    # Without --junit, the guest's JUnit XML is read here for the counts and then removed.
    with tempfile.TemporaryDirectory(prefix="tcplab-vmjunit-") as tmp:
        junit = a.junit or Path(tmp) / "junit.xml"
        try:
            kernel = resolve_kernel(a.kernel)
            _, _, lacks = check_kernel(kernel)
            if a.netem and "CONFIG_NET_SCH_NETEM" in lacks:
                raise VMError(f"kernel {kernel_version(kernel)} has no sch_netem (CONFIG_NET_SCH_NETEM): --netem "
                              "runs the labs with the netem backend forced; give a kernel with netem, or leave "
                              "out --netem (the netem labs then skip, naming it)")
            print(f"[tcplab vm] host kernel {os.uname().release}; guest kernel {kernel_version(kernel)}"
                  + (" (netem backend forced, skips fail)" if a.netem else ""), flush=True)
            guest = Guest(extra, Path.cwd(), env) if a.command else \
                pytest_guest(extra, env=env, junit=junit, artifacts=a.artifacts)
            rc = run_vm(kernel, guest, timeout=a.timeout,
                        boot_timeout=a.boot_timeout, keep=a.keep, accel=a.accel, memory=a.memory, cpus=a.cpus,
                        artifacts=a.artifacts)
        except VMError as exc:
            print(f"[tcplab vm] ERROR: {exc}", file=sys.stderr)
            return 4
        if junit.exists() and not a.command:
            c = junit_counts(junit)
            print(f"[tcplab vm] guest tests: {c['tests']} run, {c['failures']} failed, {c['errors']} errors, "
                  f"{c['skipped']} skipped", flush=True)
            if c["failures"] or c["errors"]:
                from .soak import failure_summary
                print(f"[tcplab vm] failed in the guest (kernel {kernel_version(kernel)}):\n"
                      + failure_summary([junit], lines=12), flush=True)
            if a.netem and c["skipped"]:
                print("[tcplab vm] FAIL: a test skipped in the netem run; netem must really shape traffic there")
                return rc or 1
            if c["tests"] == 0:
                print("[tcplab vm] FAIL: the guest ran no test")
                return rc or 1
        return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
