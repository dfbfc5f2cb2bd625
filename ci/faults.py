#!/usr/bin/env python3
"""Faults on purpose: inject each fault during a lab run, then prove that nothing was left behind.

    sudo .venv/bin/python ci/faults.py                  # every fault
    sudo .venv/bin/python ci/faults.py --only sigterm   # the faults whose name contains "sigterm"
    sudo .venv/bin/python ci/faults.py --seed 7         # the same "random moments" again

After each fault it checks:
  * no process of the run is left (pytest, its xdist workers, programs the labs started);
  * no network namespace is left (every namespace a task or an fd refers to, before == after;
    /run/netns unchanged);
  * no mount is left (/proc/self/mountinfo before == after);
  * no file outside pytest's temporary folders (/tmp, /run, /dev/shm, the checkout: before == after,
    pytest's own basetemp excluded);
  * the root namespace is byte-identical: links, addresses, routes (v4 and v6, all tables), the nft
    ruleset, every sysctl under /proc/sys/net (a few counters that the kernel changes by itself are
    listed in VOLATILE_SYSCTLS);
and what the run printed (the expected error, skip or summary).  At the end the catalogue runs once
more and must be green.  It prints one line per fault and exits non-zero if any check failed.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
VOLATILE_SYSCTLS = ("nf_conntrack_count", "/neigh/", "base_reachable_time", "stable_secret",
                    "gc_", "random", "boot_id", "uuid")


# -- snapshots ------------------------------------------------------------------------------
def _cmd(*argv: str) -> str:
    if shutil.which(argv[0]) is None:
        return f"({argv[0]} not installed)"
    r = subprocess.run(argv, capture_output=True, text=True)
    return r.stdout + r.stderr


def _sysctls() -> dict[str, str]:
    out = {}
    for path in Path("/proc/sys/net").rglob("*"):
        p = str(path)
        if any(v in p for v in VOLATILE_SYSCTLS) or not path.is_file():
            continue
        try:
            out[p] = path.read_text()
        except OSError:
            pass
    return out


def _namespaces() -> set[int]:
    out = set()
    for link in list(Path("/proc").glob("[0-9]*/task/[0-9]*/ns/net")) + list(Path("/proc").glob("[0-9]*/fd/*")):
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if target.startswith("net:["):
            out.add(int(target[5:-1]))
    return out


def _files(basetemps: list[Path]) -> set[str]:
    out = set()
    for top in (Path("/tmp"), Path("/run"), Path("/dev/shm")):
        for p in top.iterdir():
            if p.name.startswith("pytest-of-") or any(str(p).startswith(str(b)) for b in basetemps) \
                    or p.name.startswith(("tcplab-faults-", "tcplab-vm")):  # ours; a VM soak's
                continue
            out.add(str(p))
    r = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=REPO,
                       capture_output=True, text=True)
    out |= {f"repo:{ln[3:]}" for ln in r.stdout.splitlines()
            if not ln[3:].startswith((".venv/", "ci-artifacts/", "soak-results/"))}
    return out


def _procs() -> dict[int, str]:
    out = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            out[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            pass
    return out


def snapshot(basetemps: list[Path]) -> dict:
    return {
        "links": _cmd("ip", "-d", "link", "show"), "addresses": _cmd("ip", "addr", "show"),
        "routes4": _cmd("ip", "-4", "route", "show", "table", "all"),
        "routes6": _cmd("ip", "-6", "route", "show", "table", "all"),
        "rules": _cmd("ip", "rule", "show"), "nft": _cmd("nft", "list", "ruleset"),
        "sysctls": _sysctls(), "mounts": Path("/proc/self/mountinfo").read_text(),
        "netns": _namespaces(), "run_netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
        "files": _files(basetemps), "procs": _procs(),
    }


def leftovers(before: dict, basetemps: list[Path], deadline: float = 20.0) -> list[str]:
    """What differs from ``before``, after giving dying processes ``deadline`` seconds to go."""
    end = time.monotonic() + deadline
    while True:
        after = snapshot(basetemps)
        problems = []
        for key in ("links", "addresses", "routes4", "routes6", "rules", "nft", "mounts", "run_netns"):
            if after[key] != before[key]:
                problems.append(f"root namespace {key} changed")
        changed = [k for k in set(before["sysctls"]) | set(after["sysctls"])
                   if before["sysctls"].get(k) != after["sysctls"].get(k)]
        if changed:
            problems.append(f"sysctls changed: {sorted(changed)[:5]}")
        if after["netns"] - before["netns"]:
            problems.append(f"{len(after['netns'] - before['netns'])} network namespace(s) left")
        if after["files"] - before["files"]:
            problems.append(f"files left: {sorted(after['files'] - before['files'])[:5]}")
        me = os.getpid()
        new = {p: c for p, c in after["procs"].items() if p not in before["procs"] and p != me
               and any(w in c for w in ("pytest", "tcpdump", "socat", " nc ", "http.server", "curl", "sleep 600"))}
        if new:
            problems.append(f"processes left: {list(new.values())[:3]}")
        if not problems or time.monotonic() >= end:
            return problems
        time.sleep(0.2)  # polling against the deadline above: processes are being reaped


# -- running pytest ----------------------------------------------------------------------------
class Run:
    def __init__(self, work: Path, name: str, args: list[str], env: dict | None = None, prefix: list[str] = ()):
        self.basetemp = work / f"bt-{name}"
        self.out = work / f"{name}.out"
        cmd = [*prefix, PY, "-m", "pytest", *args, f"--basetemp={self.basetemp}", "-p", "no:cacheprovider"]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=open(self.out, "wb"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                                     start_new_session=True)

    def wait(self, timeout: float = 600) -> int:
        return self.proc.wait(timeout)

    def running_for(self, seconds: float) -> bool:
        """True if pytest is still running after ``seconds`` (it is the timer of a fault)."""
        try:
            self.proc.wait(seconds)
            return False
        except subprocess.TimeoutExpired:
            return True

    @property
    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def workers(self) -> list[int]:
        kids = []
        for d in Path("/proc").glob("[0-9]*"):
            try:
                stat = (d / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == self.proc.pid and b"execnet" in (d / "cmdline").read_bytes() or \
                        ppid == self.proc.pid and b"python" in (d / "cmdline").read_bytes():
                    kids.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
        return kids


CATALOGUE = ["labs/", "-n", "2", "-q"]


def fault_kill_worker(work, rng, i):
    run = Run(work, f"kill-worker-{i}", CATALOGUE)
    at = rng.uniform(1.0, 10.0)
    if not run.running_for(at):
        return run, f"the run ended before {at:.1f} s", None
    workers = run.workers()
    if not workers:
        run.wait()
        return run, "no xdist worker found", None
    victim = rng.choice(workers)
    os.kill(victim, signal.SIGKILL)
    rc = run.wait()
    ok = "crashed" in run.text or "worker" in run.text.lower()
    return run, None if ok else "xdist did not report the crashed worker", \
        f"worker {victim} SIGKILLed at {at:.1f} s; pytest exit {rc}"


def fault_kill_controller(work, rng, i):
    run = Run(work, "kill-controller", CATALOGUE)
    at = rng.uniform(2.0, 8.0)
    if not run.running_for(at):
        return run, f"the run ended before {at:.1f} s", None
    os.kill(run.proc.pid, signal.SIGKILL)
    run.wait()
    return run, None, f"controller SIGKILLed at {at:.1f} s"


def fault_signal(sig):
    def fault(work, rng, i):
        run = Run(work, f"{sig.name.lower()}", CATALOGUE)
        at = rng.uniform(2.0, 8.0)
        if not run.running_for(at):
            return run, f"the run ended before {at:.1f} s", None
        os.killpg(run.proc.pid, sig)  # the whole group, as a terminal or a CI runner does
        rc = run.wait(120)
        summary = any(re.search(r"\d+ (passed|failed|error).* in [\d.]+s", ln) for ln in run.text.splitlines()[-5:])
        return run, None if summary else "pytest printed no summary", \
            f"{sig.name} to the process group at {at:.1f} s; pytest exit {rc}, summary printed: {summary}"
    return fault


def fault_timeout(work, rng, i):
    run = Run(work, "timeout", ["labs/test_loss.py", "-k", "backoff and ipv4", "--timeout", "1", "-q"])
    rc = run.wait(120)
    fired = "Timeout" in run.text
    return run, None if fired and rc == 1 else f"expected a Timeout failure (exit {rc})", \
        f"pytest-timeout fired after 1 s in the SYN backoff lab; exit {rc}" + _line_with(run.text, "Timeout")


def _private_tmpfs(mnt: Path, size: str):
    """preexec_fn: a private mount namespace for the child, with a small tmpfs on ``mnt``.  Done
    with mount(2) directly (no mount(8), which would leave /run/mount/utab behind)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    def setup():
        if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        if libc.mount(b"none", b"/", None, 0x40000 | 0x4000, None) != 0:  # MS_PRIVATE | MS_REC
            raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
        if libc.mount(b"tcplab-full", str(mnt).encode(), b"tmpfs", 0, f"size={size}".encode()) != 0:
            raise OSError(ctypes.get_errno(), "mount tmpfs")
    return setup


def fault_disk_full(work, rng, i):
    mnt = work / "full"
    mnt.mkdir()
    out = work / "disk-full.out"
    # the tiny tmpfs exists only in the child's private mount namespace, never outside this run
    p = subprocess.run([PY, "-m", "pytest", "labs/test_data.py", "-q", "-p", "no:cacheprovider",
                        f"--basetemp={mnt}/bt"], cwd=REPO, stdout=open(out, "wb"), stderr=subprocess.STDOUT,
                       timeout=180, preexec_fn=_private_tmpfs(mnt, "8k"))
    text = out.read_text(errors="replace")

    class R:
        pass
    run = R()
    run.text, run.basetemp = text, mnt
    named = f"in {mnt}/bt" in text and "free space there" in text
    partial = list(mnt.rglob("*.pcap"))  # the mount is gone: nothing may be here
    return run, None if named and p.returncode == 1 and not partial else "no clear disk-full error naming the folder", \
        f"tmpfs of 8 KiB under the captures; exit {p.returncode}; error names the folder: {named}" \
        + _line_with(text, "could not write the capture")


def _line_with(text: str, needle: str) -> str:
    """The first output line that contains ``needle`` (shortened), to show what the user read."""
    line = next((ln.strip() for ln in text.splitlines() if needle in ln), "")
    return f'; said: "{line[:220]}"' if line else ""


def _fake_tool(work, name, script):
    d = work / f"fake-{name}"
    d.mkdir(exist_ok=True)
    (d / name).write_text(script)
    (d / name).chmod(0o755)
    return d


FAKE_NFT = '#!/bin/sh\necho "nft: simulated failure" >&2\nexit 1\n'


def fault_nft(kind):
    def fault(work, rng, i):
        args = ["labs/test_loss.py", "tests/integration/test_impair.py", "-k", "drop or loss", "-q",
                "--tcplab-backend", "nft", "--timeout", "60"]
        prefix = []
        if kind == "missing":
            # tcplab looks in /usr/sbin and /sbin past the PATH: the machine is made to lack nft in
            # a private mount namespace of the run, with /dev/null over it
            nft = shutil.which("nft") or shutil.which("nft", path="/usr/local/sbin:/usr/sbin:/sbin")
            prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                      f'mount --bind /dev/null {nft} && exec "$@"', "hide-nft"]
            path = os.environ["PATH"]
            expect = "the nft command is not installed"
        else:
            fake = _fake_tool(work, "nft", FAKE_NFT)
            path = f"{fake}:{os.environ['PATH']}"
            expect = "simulated failure"
        run = Run(work, f"nft-{kind}", args, env={"PATH": path}, prefix=prefix)
        rc = run.wait(300)
        said = expect in run.text
        passed_unimpaired = " passed" in run.text.splitlines()[-1] and "failed" not in run.text.splitlines()[-1] \
            and "skipped" not in run.text.splitlines()[-1]
        err = None if said and not passed_unimpaired else f"expected {expect!r} as the reason, no unimpaired pass"
        return run, err, f"nft {kind}: exit {rc}; last line: {run.text.strip().splitlines()[-1]}" \
            + _line_with(run.text, expect)
    return fault


def fault_tcpdump_missing(work, rng, i):
    lab = work / "lab_tcpdump"
    lab.mkdir()
    (lab / "test_dump.py").write_text(textwrap.dedent("""
        def test_with_tcpdump(hosts):
            dump = hosts.client.popen(["tcpdump", "-i", "eth0", "-w", "x.pcap"])
            dump.close()
    """))
    path = ":".join(p for p in os.environ["PATH"].split(":") if not Path(p, "tcpdump").exists())
    out = work / "tcpdump.out"
    p = subprocess.run([PY, "-m", "pytest", str(lab), "-q", "-rs", "-p", "no:cacheprovider",
                        f"--basetemp={work / 'bt-tcpdump'}"], cwd=lab, env={**os.environ, "PATH": path},
                       stdout=open(out, "wb"), stderr=subprocess.STDOUT, timeout=120)

    class R:
        pass
    run = R()
    run.text, run.basetemp = out.read_text(errors="replace"), work / "bt-tcpdump"
    said = "the tcpdump command is not installed" in run.text and "skipped" in run.text
    return run, None if said else "expected a skip naming tcpdump", f"tcpdump missing: exit {p.returncode}, " \
        f"skip reason names it: {said}" + _line_with(run.text, "tcpdump")


def fault_netlink_error(work, rng, i):
    """Force the netem backend on a kernel without sch_netem: the kernel answers the qdisc request
    with a netlink error (ENOENT); strict mode must fail, not run unimpaired."""
    from_kernel = subprocess.run([PY, "-c", "from tcplab.wire.impair import probe_netem; print(probe_netem()[0])"],
                                 capture_output=True, text=True, cwd=REPO).stdout.strip()
    args = ["labs/test_loss.py", "-k", "random_loss and ipv4", "-q", "--tcplab-backend", "netem", "--tcplab-strict"]
    run = Run(work, "netlink", args)
    rc = run.wait(300)
    if from_kernel == "True":
        return run, None, f"this kernel has sch_netem: no netlink error to provoke (exit {rc})"
    said = "the kernel refused a netem qdisc" in run.text and rc == 1
    return run, None if said else "expected a failure naming the refused netem qdisc", \
        f"netem forced on a kernel without it: exit {rc}; failure names the kernel's refusal: {said}" \
        + _line_with(run.text, "the kernel refused")


FAULTS = [*[(f"sigkill-worker-{k + 1}", fault_kill_worker) for k in range(10)],
          ("sigkill-controller", fault_kill_controller),
          ("sigint", fault_signal(signal.SIGINT)), ("sigterm", fault_signal(signal.SIGTERM)),
          ("pytest-timeout", fault_timeout), ("disk-full", fault_disk_full),
          ("nft-missing", fault_nft("missing")), ("nft-failing", fault_nft("failing")),
          ("tcpdump-missing", fault_tcpdump_missing), ("netlink-error", fault_netlink_error)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="run only the faults whose name contains this")
    ap.add_argument("--seed", type=int, default=None, help="seed of the random moments (default: random, printed)")
    ap.add_argument("--no-final-run", action="store_true", help="skip the final green catalogue run")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: sudo .venv/bin/python ci/faults.py", file=sys.stderr)
        return 2
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 10**6)
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="tcplab-faults-"))
    print(f"[faults] seed {seed}; logs in {work}", flush=True)
    failed = 0
    for i, (name, fault) in enumerate(FAULTS):
        if a.only and a.only not in name:
            continue
        before = snapshot([work])
        t0 = time.monotonic()
        run, err, what = fault(work, rng, i)
        problems = leftovers(before, [work])
        status = "OK " if not err and not problems else "BAD"
        failed += status == "BAD"
        print(f"[faults] {status} {name}: {what or ''} ({time.monotonic() - t0:.1f} s)"
              + (f"\n         {err}" if err else "")
              + "".join(f"\n         left behind: {p}" for p in problems), flush=True)
        if status == "BAD":
            print(textwrap.indent(run.text[-2500:], "         | "))
    if not a.no_final_run:
        before = snapshot([work])
        run = Run(work, "final", CATALOGUE)
        rc = run.wait()
        problems = leftovers(before, [work])
        ok = rc == 0 and not problems
        failed += not ok
        print(f"[faults] {'OK ' if ok else 'BAD'} next run after the faults: exit {rc}; "
              f"{run.text.strip().splitlines()[-1]}" + "".join(f"\n         left behind: {p}" for p in problems))
    if failed:
        print(f"[faults] logs and pcaps kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"[faults] {failed} fault(s) with a problem")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
