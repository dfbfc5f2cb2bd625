"""Running many packetdrill scripts, and what a run leaves to read: the kernel runner's runs of
a folder (both IP versions unless a script names one) over worker processes, the ladder of an
exchange in the script's notation, its pcap, a lab script's header."""
from __future__ import annotations

import struct
from pathlib import Path

from .pkt import Config, Outcome, render, run_script


def script_ip_versions(path: Path) -> list[int]:
    """The IP versions the kernel's runner runs a script in: the one its ``--ip_version`` line
    names, else both."""
    text = Path(path).read_text()
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("--ip_version="):
            return [6 if s.split("=", 1)[1].strip() == "ipv6" else 4]
    return [4, 6]


#: what the kernel's ksft_runner.sh defines for each IP version (its Fast Open cookies, its names
#: for the error queue's control messages)
KSFT_DEFINES = {
    4: {"TFO_COOKIE": "3021b9d889017eeb", "TFO_COOKIE_ZERO": "b7c12350a90dc8f5", "CMSG_LEVEL_IP": "SOL_IP",
        "CMSG_TYPE_RECVERR": "IP_RECVERR"},
    6: {"TFO_COOKIE": "c1d1e9742a47a9bc", "TFO_COOKIE_ZERO": "82af1a8f9a205c34", "CMSG_LEVEL_IP": "SOL_IPV6",
        "CMSG_TYPE_RECVERR": "IPV6_RECVERR"},
}


def runs_of(paths: list[Path], versions: list[int] | None = None) -> list[tuple[Path, int]]:
    """(script, IP version) for every script under ``paths`` (files, or folders of *.pkt), in
    the versions given, else in those the kernel's runner would run it."""
    scripts: list[Path] = []
    for p in map(Path, paths):
        scripts += sorted(p.glob("*.pkt")) if p.is_dir() else [p]
    out = []
    for s in scripts:
        named = script_ip_versions(s)
        for v in (versions or named):
            if v in named:
                out.append((s, v))
    return out


def _run_one(args: tuple) -> Outcome:
    path, config = args
    return run_script(path, config)


def run_many(runs: list[tuple[Path, Config]], workers: int = 1):
    """Each (script, config), over ``workers`` processes; yields each Outcome as it ends.  The
    processes are forked from this one, which has arranged where labs run (a user namespace
    rootless) and started no thread yet."""
    if workers <= 1 or len(runs) <= 1:
        for r in runs:
            yield _run_one(r)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    ctx = multiprocessing.get_context("fork")
    try:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    except OSError as exc:      # no /dev/shm for the pool's semaphores (a bare container, a VM's initramfs)
        import sys
        print(f"tcplab pkt: cannot start {workers} worker processes ({exc.strerror}: multiprocessing needs "
              "/dev/shm): running one after another", file=sys.stderr)
        yield from run_many(runs, 1)
        return
    with pool:
        futures = [pool.submit(_run_one, r) for r in runs]
        for f in as_completed(futures):
            yield f.result()


# -- what a failure shows ------------------------------------------------------------------------

def ladder(outcome: Outcome, *, width: int = 64) -> str:
    """The exchange as a ladder in the script's notation: the kernel under test on the left, the
    scripted peer on the right, each segment with its time and the script line it answers."""
    rows = [f"{'time':>9}  {'kernel under test':<{width // 2}}{'scripted peer':>{width // 2}}   line"]
    for t, direction, frame, line, seq, ack in outcome.exchange:
        text = render(frame, seq, ack, opts=False)
        arrow = f"|---- {text} ---->|" if direction == ">" else f"|<---- {text} ----|"
        mark = "  <-- here" if line == outcome.line and outcome.status == "fail" else ""
        rows.append(f"{t:8.3f}s  {arrow:<{width}}   {line}{mark}")
    return "\n".join(rows)


def write_pcap(outcome: Outcome, path: Path) -> Path:
    """The exchange as a pcap of tun0 (both directions; LINKTYPE_RAW: IP packets), times from the
    run's start."""
    from ..wire.tun import encode
    with open(path, "wb") as f:
        f.write(struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        for t, _, frame, *_ in outcome.exchange:
            raw = encode(frame)
            sec = int(t)
            f.write(struct.pack("=IIII", sec, int((t - sec) * 1e6), len(raw), len(raw)) + raw)
    return path


def header_of(path: Path) -> dict:
    """A lab script's header comment: ``// lab: H7 H8 points=3 hint='...'`` -> claims, points, hint."""
    import shlex
    for line in Path(path).read_text().splitlines():
        s = line.strip()
        if s.startswith("// lab:"):
            words = shlex.split(s[len("// lab:"):])
            out: dict = {"claims": [w for w in words if "=" not in w]}
            for w in words:
                if "=" in w:
                    k, v = w.split("=", 1)
                    out[k] = (int(float(v)) if float(v).is_integer() else float(v)) if k == "points" else v
            return out
    return {}
