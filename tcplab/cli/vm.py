"""``python -m tcplab vm``: run a pytest selection inside a VM booted from another kernel.

The default kernel is Debian's stock kernel (``sudo ci/setup --vm`` installs it), which ships
sch_netem; this machine's own kernel does not.  The VM boots that kernel with a small initramfs
(busybox, the modules the labs need), mounts the host's root read-only over 9p, chroots into it
(so this checkout and its venv run unchanged), runs pytest, and writes pytest's exit status,
output and JUnit XML to a read-write 9p share that the host reads back.

* KVM is used only where it can run a stock kernel: ``/dev/kvm`` usable, a vmx/svm CPU, and not
  the PVM flavour (``/sys/module/kvm_pvm``), which hangs stock kernels; otherwise TCG.
* Every wait is bounded: no sign of the guest within ``--boot-timeout`` or no result within
  ``--timeout`` kills QEMU and says so.  Nothing is left running; the host is not changed (the
  root share is read-only; the temporary directory is removed unless ``--keep``).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULES = ("veth", "bridge", "sch_netem", "sch_tbf", "nf_tables", "nft_numgen", "nft_meta_bridge", "inet_diag",
           "tcp_diag", "virtio_pci", "9pnet_virtio", "9p")
NETEM_SELECTION = ("tests/integration/test_impair.py", "labs/test_loss.py", "labs/test_handshake.py",
                   "labs/test_close.py", "labs/test_states.py")

# {scratch}: a tmpfs in the guest for temporary files and the results share.  It is mounted over
# a directory of the (read-only) host root that holds neither the checkout nor its interpreter.
INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "TCPLAB_GUEST_UP $(uname -r)"
while read m; do insmod "/lib/modules/$m" 2>/dev/null; done < /modules.order
mkdir -p /host
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 hostroot /host; then
  echo "TCPLAB_ERROR cannot mount the host root over 9p"; poweroff -f
fi
mount -t tmpfs scratch /host{scratch}
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mkdir -p /host{scratch}/tcplab-results /host{scratch}/tmp
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 results /host{scratch}/tcplab-results
chroot /host /bin/sh {scratch}/tcplab-results/run.sh
echo "TCPLAB_EXIT=$?"
sync
poweroff -f
"""


class VMError(RuntimeError):
    pass


def _cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive: (path, mode, data) entries; directories have empty data."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")], 1):
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        out += hdr.encode() + nb
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def kernel_version(image: Path) -> str:
    m = re.match(r"vmlinuz-(.+)$", image.name)
    if not m:
        raise VMError(f"cannot tell the version of kernel image {image}: expected /boot/vmlinuz-VERSION")
    return m.group(1)


def default_kernel() -> Path:
    """The newest /boot/vmlinuz-* whose modules include sch_netem, preferring one that is not the
    running kernel (the point is a second kernel; on Ubuntu it may be the only one)."""
    running = os.uname().release
    found = []
    for img in Path("/boot").glob("vmlinuz-*"):
        try:
            kv = kernel_version(img)
        except VMError:
            continue
        if list(Path(f"/lib/modules/{kv}").rglob("sch_netem.ko*")):
            found.append(img)
    others = [img for img in found if kernel_version(img) != running]
    found = others or found
    if not found:
        raise VMError("no kernel image with sch_netem under /boot: run  sudo ci/setup --vm  "
                      "(installs Debian's linux-image-amd64 and QEMU), or pass --kernel")
    return sorted(found, key=lambda p: [int(x) if x.isdigit() else x for x in re.split(r"[.-]", p.name)])[-1]


def scratch_dir(*keep: Path) -> str:
    """A directory of the host root to hide under the guest's tmpfs: one that holds none of
    ``keep`` (the checkout, the interpreter).  The checkout may well live under /tmp."""
    for cand in ("/run", "/mnt", "/srv", "/media", "/opt"):
        if Path(cand).is_dir() and not any(str(k.resolve()).startswith(cand + "/") for k in keep):
            return cand
    raise VMError("no directory of the host root is free for the guest's scratch space "
                  "(/run, /mnt, /srv, /media and /opt all hold the checkout or its interpreter)")


def build_initramfs(kver: str, dest: Path, scratch: str = "/run") -> Path:
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not Path(busybox).exists():
        raise VMError("busybox is missing: apt-get install busybox-static (sudo ci/setup --vm)")
    order: list[str] = []
    files: dict[str, bytes] = {}
    for mod in MODULES:
        r = subprocess.run(["modprobe", "-S", kver, "--show-depends", mod], capture_output=True, text=True)
        if r.returncode != 0:
            raise VMError(f"kernel {kver} has no module {mod}: {r.stderr.strip()}")
        for line in r.stdout.splitlines():
            parts = line.split()
            if parts[:1] != ["insmod"]:
                continue  # builtin
            path = parts[1]
            rel = os.path.relpath(path, f"/lib/modules/{kver}")
            if rel not in files:
                files[rel] = Path(path).read_bytes()
                order.append(rel)
    entries = [(d, 0o40755, b"") for d in ("bin", "proc", "sys", "dev", "lib", "lib/modules")]
    dirs = sorted({str(Path("lib/modules", r).parent) for r in order})
    for d in dirs:
        parts = Path(d).parts
        for i in range(3, len(parts) + 1):
            p = str(Path(*parts[:i]))
            if (p, 0o40755, b"") not in entries:
                entries.append((p, 0o40755, b""))
    entries.append(("bin/busybox", 0o100755, Path(busybox).read_bytes()))
    entries.append(("init", 0o100755, INIT.replace("{scratch}", scratch).encode()))
    entries.append(("modules.order", 0o100644, ("\n".join(order) + "\n").encode()))
    entries += [(f"lib/modules/{r}", 0o100644, files[r]) for r in order]
    dest.write_bytes(_cpio_newc(entries))
    return dest


def kvm_usable() -> tuple[bool, str]:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "no usable /dev/kvm"
    if Path("/sys/module/kvm_pvm").is_dir():
        return False, "/dev/kvm is PVM (kvm_pvm), which hangs stock kernels"
    flags = Path("/proc/cpuinfo").read_text()
    if not re.search(r"\b(vmx|svm)\b", flags):
        return False, "the CPU has no vmx/svm"
    return True, "KVM"


def run_vm(kernel: Path, pytest_args: list[str], *, env: dict[str, str], timeout: float,
           boot_timeout: float, junit: Path | None, keep: bool, accel: str, memory: str,
           artifacts: Path | None = None) -> int:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise VMError("qemu-system-x86_64 is missing: run  sudo ci/setup --vm")
    kver = kernel_version(kernel)
    work = Path(tempfile.mkdtemp(prefix="tcplab-vm-"))
    results = work / "results"
    results.mkdir()
    try:
        t0 = time.monotonic()
        python = REPO / ".venv" / "bin" / "python"
        scratch = scratch_dir(REPO, python.resolve() if python.exists() else python)
        initrd = build_initramfs(kver, work / "initramfs.cpio", scratch)
        if accel == "auto":
            ok, why = kvm_usable()
            accel = "kvm" if ok else "tcg"
            print(f"[tcplab vm] accelerator: {accel} ({why})", flush=True)
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        args = " ".join(shlex.quote(a) for a in pytest_args)
        (results / "run.sh").write_text(f"""
export HOME={scratch}/tmp TMPDIR={scratch}/tmp PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PYTHONDONTWRITEBYTECODE=1 PY_COLORS=0 {exports}
cd {shlex.quote(str(REPO))}
echo "[guest] kernel $(uname -r), python $(.venv/bin/python -c 'import sys; print(sys.version.split()[0])')"
.venv/bin/python -m tcplab doctor
.venv/bin/python -m pytest {args} --junitxml={scratch}/tcplab-results/junit.xml --tcplab-artifacts={scratch}/tcplab-results/artifacts
rc=$?
echo $rc > {scratch}/tcplab-results/exit_code
exit $rc
""")
        cpu = "host" if accel == "kvm" else "max"
        cmd = [qemu, "-machine", f"q35,accel={accel}", "-cpu", cpu, "-smp", "2", "-m", memory,
               "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot", "-nic", "none",
               "-kernel", str(kernel), "-initrd", str(initrd),
               "-append", "console=ttyS0 quiet panic=-1 loglevel=3",
               "-fsdev", "local,id=hr,path=/,security_model=none,readonly=on,multidevs=remap",
               "-device", "virtio-9p-pci,fsdev=hr,mount_tag=hostroot",
               "-fsdev", f"local,id=rs,path={results},security_model=none,multidevs=remap",
               "-device", "virtio-9p-pci,fsdev=rs,mount_tag=results"]
        print(f"[tcplab vm] booting {kernel} ({kver}) with {accel.upper()}; pytest {args}", flush=True)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        up = threading.Event()
        status: dict[str, int] = {}
        log = open(work / "console.log", "wb")

        def pump():
            for raw in proc.stdout:
                log.write(raw)
                line = raw.decode(errors="replace").rstrip("\r\n")
                if "TCPLAB_GUEST_UP" in line:
                    up.set()
                    print(f"[tcplab vm] guest up after {time.monotonic() - t0:.1f} s: kernel {line.split()[-1]}",
                          flush=True)
                    continue
                m = re.search(r"TCPLAB_EXIT=(\d+)", line)
                if m:
                    status["exit"] = int(m.group(1))
                print(f"  | {line}", flush=True)
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            if not up.wait(boot_timeout):
                raise VMError(f"the guest showed no sign of life within {boot_timeout:g} s "
                              f"(accelerator {accel}); console log: {work / 'console.log'}")
            try:
                proc.wait(timeout=max(1.0, timeout - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                raise VMError(f"the VM run did not finish within {timeout:g} s: killed") from None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            reader.join(5)
            log.close()
        wall = time.monotonic() - t0
        rc_file = results / "exit_code"
        if rc_file.exists():
            rc = int(rc_file.read_text().strip())
        elif "exit" in status:
            rc = status["exit"]
        else:
            raise VMError(f"the guest ended without a pytest result; console log kept at {work / 'console.log'}")
        if junit and (results / "junit.xml").exists():
            junit.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(results / "junit.xml", junit)
        if artifacts and (results / "artifacts").is_dir():
            shutil.copytree(results / "artifacts", artifacts, dirs_exist_ok=True)
            print(f"[tcplab vm] pcaps and failure text of the failed tests: {artifacts}", flush=True)
        print(f"[tcplab vm] kernel {kver}: pytest exit {rc}; VM wall time {wall:.1f} s", flush=True)
        return rc
    except VMError:
        keep = True
        raise
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"[tcplab vm] kept {work}", flush=True)


def junit_counts(path: Path) -> dict[str, int]:
    import xml.etree.ElementTree as ET
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    keys = ("tests", "failures", "errors", "skipped")
    return {k: sum(int(s.get(k, 0)) for s in suites) for k in keys}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="tcplab vm", description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernel", type=Path, help="kernel image (default: newest /boot/vmlinuz-* with sch_netem)")
    ap.add_argument("--netem", action="store_true",
                    help="the CI preset: impairment tests and loss labs with the netem backend forced, "
                         "and any skip counted as a failure")
    ap.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    ap.add_argument("--memory", default="2G")
    ap.add_argument("--timeout", type=float, default=2400, help="seconds for the whole VM run")
    ap.add_argument("--boot-timeout", type=float, default=180, help="seconds until the guest must be up")
    ap.add_argument("--junit", type=Path, help="copy the guest's JUnit XML here")
    ap.add_argument("--artifacts", type=Path,
                    help="copy the pcaps and failure text of the guest's failed tests here")
    ap.add_argument("--keep", action="store_true", help="keep the VM's work directory (console log, results)")
    ap.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: pytest arguments")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("the VM run needs root (the guest builds namespaces as root): sudo .venv/bin/python -m tcplab vm ...",
              file=sys.stderr)
        return 4
    extra = [x for x in a.pytest_args if x != "--"]
    env: dict[str, str] = {}
    if a.netem:
        env.update(TCPLAB_BACKEND="netem", TCPLAB_STRICT="1", TCPLAB_SLOW="1")   # slow: TIME_WAIT's 60 s
        extra = extra or [*NETEM_SELECTION, "-n", "2", "-q"]
    if not extra:
        ap.error("give pytest arguments after --, e.g.  python -m tcplab vm -- labs/test_loss.py -q  (or --netem)")
    junit = a.junit or (Path(tempfile.mkdtemp(prefix="tcplab-vmjunit-")) / "junit.xml")
    try:
        kernel = a.kernel or default_kernel()
        print(f"[tcplab vm] host kernel {os.uname().release}; guest kernel {kernel_version(kernel)}"
              + (" (netem backend forced, skips fail)" if a.netem else ""), flush=True)
        rc = run_vm(kernel, extra, env=env, timeout=a.timeout, boot_timeout=a.boot_timeout, junit=junit,
                    keep=a.keep, accel=a.accel, memory=a.memory, artifacts=a.artifacts)
    except VMError as exc:
        print(f"[tcplab vm] ERROR: {exc}", file=sys.stderr)
        return 4
    if junit.exists():
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
