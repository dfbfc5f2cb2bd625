"""Run a pytest selection inside a VM booted from another kernel (``tcplab vm``, ``pytest --tcplab-vm``).

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

import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import tools
from .where import GUEST_ENV

REPO = Path(__file__).resolve().parents[2]
MODULES = ("veth", "bridge", "sch_netem", "sch_tbf", "nf_tables", "nft_numgen", "nft_meta_bridge", "inet_diag",
           "tcp_diag", "tun", "virtio_pci", "9pnet_virtio", "9p")
#: a kernel without these still boots the labs that do not need them (Ubuntu keeps sch_netem in
#: linux-modules-extra; grading needs none of them); the netem labs then skip, or fail with --netem.
#: tun: the delay line's tap, for the nftables backend's delay where the guest runs it
OPTIONAL_MODULES = ("sch_netem", "tun")
HEARTBEAT = 30.0     # seconds of silence from the guest before the host says it is still running
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
mkdir -p /host/dev/shm && mount -t tmpfs shm /host/dev/shm
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
    """The version of a kernel image: from its name (``vmlinuz-VERSION``, as distributions install
    it), else from the image itself (a bzImage's setup header points at its version string, as
    ``file`` reads it: the ``bzImage`` a kernel build leaves)."""
    m = re.match(r"vmlinuz-(.+)$", image.name)
    if m:
        return m.group(1)
    try:
        with open(image, "rb") as f:
            head = f.read(0x10400)   # the version string is within 64 KiB of the setup header
    except OSError as exc:
        raise VMError(f"cannot read the kernel image {image}: {exc.strerror}") from None
    if head[0x202:0x206] == b"HdrS":
        (offset,) = struct.unpack_from("<H", head, 0x20E)
        text = head[0x200 + offset:0x200 + offset + 256].split(b"\0")[0].decode(errors="replace")
        if text.split():
            return text.split()[0]
    raise VMError(f"{image} is not a bootable x86 kernel image (no bzImage header): give a bzImage "
                  "(arch/x86/boot/bzImage of a kernel build) or /boot/vmlinuz-VERSION")


#: Linux lines tcplab boots by name: the Debian suite that serves each, and its package's name
#: (``--kernel 6.12``).  Fetched once into CACHE, never installed on the machine.
LINES = {
    "6.1": ("bookworm", r"linux-image-6\.1\.0-\d+-amd64-unsigned"),
    "6.12": ("bookworm-backports", r"linux-image-6\.12\.\d+\+deb12-amd64-unsigned"),
}
CACHE = Path("/var/cache/tcplab/kernels")
#: what the labs need of a kernel, by CONFIG_ option, and the module each comes as (if any)
NEEDED = {"NET_NS": None, "VETH": "veth", "BRIDGE": "bridge", "NF_TABLES": "nf_tables",
          "NF_TABLES_BRIDGE": "nf_tables", "NFT_NUMGEN": "nft_numgen", "NFT_BRIDGE_META": "nft_meta_bridge",
          "INET_DIAG": "inet_diag", "INET_TCP_DIAG": "tcp_diag", "NET_SCH_TBF": "sch_tbf",
          "BLK_DEV_INITRD": None, "DEVTMPFS": None, "TMPFS": None, "SERIAL_8250_CONSOLE": None,
          "VIRTIO_PCI": "virtio_pci", "NET_9P": "9pnet", "NET_9P_VIRTIO": "9pnet_virtio", "9P_FS": "9p"}
#: what some labs need: without it they skip, naming it (or fail, with --netem)
WANTED = {"NET_SCH_NETEM": "sch_netem", "TUN": "tun", "PERF_EVENTS": None}


def modules_root(image: Path, kver: str) -> Path | None:
    """Where the image's modules are: beside it, as a package unpacked leaves them
    (IMAGE/../../lib/modules/VERSION), in the build tree it came from (``make modules_install
    INSTALL_MOD_PATH=.`` in the tree of arch/x86/boot/bzImage), else the machine's
    /lib/modules/VERSION; None where none exists (everything must then be built in)."""
    image = image.resolve()
    for root in (image.parent.parent, *image.parents[3:4], Path("/")):
        if (root / "lib" / "modules" / kver).is_dir():
            return root
    return None


def kernel_config(image: Path, kver: str) -> Path | None:
    """The image's build configuration: ``config-VERSION`` beside it (as /boot keeps it), or the
    ``.config`` of the build tree it came from (arch/x86/boot/bzImage)."""
    image = image.resolve()
    for cand in (image.parent / f"config-{kver}", *(p / ".config" for p in image.parents[:4])):
        if cand.is_file():
            return cand
    return None


def check_kernel(image: Path) -> tuple[str, Path | None, list[str]]:
    """(version, modules root, what the labs that need it will lack) for a kernel image; raises a
    VMError naming every missing option where the labs cannot run on it at all, before booting
    anything (an image that cannot mount the host's root would otherwise show nothing until
    the boot timeout)."""
    kver = kernel_version(image)
    root = modules_root(image, kver)
    config = kernel_config(image, kver)
    if config is None:
        raise VMError(f"no build configuration for {image} ({kver}): tcplab checks it before booting. Put "
                      f"config-{kver} beside the image, or boot it from its build tree (arch/x86/boot/bzImage "
                      "with its .config)")
    values = dict(re.findall(r"^CONFIG_(\w+)=(\S+)", config.read_text(errors="replace"), re.M))

    def present(option: str, module: str | None) -> bool:
        v = values.get(option)
        if v == "y":
            return True
        if v == "m" and module and root is not None:
            return any((root / "lib" / "modules" / kver).rglob(f"{module}.ko*"))
        return False
    where = f"{root}/lib/modules/{kver}" if root is not None else f"lib/modules/{kver} beside the image"
    missing = [f"CONFIG_{o}" + (f" (=y, or =m with {m}.ko in {where})" if m else "=y")
               for o, m in NEEDED.items() if not present(o, m)]
    if missing:
        raise VMError(f"kernel {kver} ({image}) lacks what the labs need to boot and run: " + ", ".join(missing))
    lacks = [f"CONFIG_{o}" for o, m in WANTED.items() if not present(o, m)]
    return kver, root, lacks


def line_kernel(line: str, *, fetch: bool = True) -> Path:
    """The image of Linux ``line`` (a key of LINES): Debian's package, unpacked under CACHE
    (fetched once with apt from the suite that serves it, as root; the machine's own package
    state and sources are not touched)."""
    if line not in LINES:
        raise VMError(f"--kernel {line}: tcplab boots the lines {', '.join(LINES)} by name, or an image by "
                      "its path (/boot/vmlinuz-VERSION, arch/x86/boot/bzImage)")
    suite, package = LINES[line]
    have = sorted(CACHE.glob(f"{line}.*/boot/vmlinuz-*"), key=lambda p: _version_key(p.name))
    if have:
        return have[-1]
    if not fetch:
        raise VMError(f"Linux {line} is not in {CACHE}: run  sudo tcplab vm --kernel {line} ...  once")
    if os.geteuid() != 0:
        raise VMError(f"Linux {line} is not here yet, and fetching it needs root: run  sudo ci/setup --vm "
                      f"--kernel {line}  (or sudo tcplab vm --kernel {line} ...) once")
    return _fetch_line(line, suite, package)


def _version_key(name: str):
    return [int(x) if x.isdigit() else x for x in re.split(r"[.+~-]", name)]


def _fetch_line(line: str, suite: str, package: str) -> Path:
    for tool in ("apt-get", "apt-cache", "dpkg-deb", "depmod"):
        tools.require(tool, f"fetching Linux {line} from Debian's {suite}")
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=CACHE))
    try:
        (work / "lists" / "partial").mkdir(parents=True)
        (work / "archives" / "partial").mkdir(parents=True)
        keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")   # Ubuntu has it too (universe)
        if not keyring.is_file():
            raise VMError(f"fetching Linux {line} from Debian needs Debian's archive key: apt-get install "
                          "debian-archive-keyring (sudo ci/setup --vm installs it)")
        (work / "sources.list").write_text(f"deb [signed-by={keyring}] http://deb.debian.org/debian {suite} main\n")
        apt = ["-o", f"Dir::Etc::sourcelist={work / 'sources.list'}", "-o", "Dir::Etc::sourceparts=-",
               "-o", f"Dir::State::Lists={work / 'lists'}", "-o", f"Dir::Cache={work}",
               "-o", "APT::Sandbox::User=root", "-q"]
        print(f"[tcplab vm] fetching Linux {line} from Debian's {suite} (once, into {CACHE})", flush=True)

        def run(argv: list[str]) -> str:
            r = subprocess.run(argv, cwd=work, capture_output=True, text=True)
            if r.returncode != 0:
                raise VMError(f"{' '.join(argv[:1] + argv[-2:])} failed: {(r.stderr or r.stdout).strip()[-600:]}")
            return r.stdout
        run(["apt-get", *apt, "update"])
        names = [n for n in run(["apt-cache", *apt, "pkgnames", "linux-image-"]).split()
                 if re.fullmatch(package, n)]
        if not names:
            raise VMError(f"Debian's {suite} serves no package matching {package}")
        name = max(names, key=_version_key)
        run(["apt-get", *apt, "download", name])
        (deb,) = work.glob("*.deb")
        tree = work / "tree"
        run(["dpkg-deb", "-x", str(deb), str(tree)])
        (image,) = (tree / "boot").glob("vmlinuz-*")
        kver = kernel_version(image)
        run(["depmod", "-b", str(tree), kver])
        dest = CACHE / kver
        shutil.rmtree(dest, ignore_errors=True)
        tree.rename(dest)
        print(f"[tcplab vm] Linux {kver} ({name}) is in {dest}", flush=True)
        return dest / "boot" / image.name
    finally:
        shutil.rmtree(work, ignore_errors=True)


def resolve_kernel(spec: str | Path | None) -> Path:
    """The kernel image ``--kernel`` names: a line (``6.1``, ``6.12``), a path, or (None) the
    default: ``TCPLAB_VM_KERNEL``, else the newest under /boot with sch_netem."""
    if spec is None:
        return default_kernel()
    if str(spec) in LINES:
        line = str(spec)
        boot = [img for img in Path("/boot").glob(f"vmlinuz-{line}.*") if modules_root(img, kernel_version(img))]
        return max(boot, key=lambda p: _version_key(p.name)) if boot else line_kernel(line)
    path = Path(spec)
    if not path.is_file():
        raise VMError(f"--kernel {spec}: no such kernel image (give {', '.join(LINES)}, or the path of an image)")
    return path


def default_kernel() -> Path:
    """``TCPLAB_VM_KERNEL`` if set, else the newest /boot/vmlinuz-* whose modules include veth,
    bridge and nf_tables, preferring one with sch_netem and one that is not the running kernel
    (the point is a second kernel; on Ubuntu it may be the only one)."""
    given = os.environ.get("TCPLAB_VM_KERNEL")
    if given:
        if not Path(given).is_file():
            raise VMError(f"TCPLAB_VM_KERNEL={given}: no such kernel image")
        return Path(given)
    running = os.uname().release
    found = []
    for img in Path("/boot").glob("vmlinuz-*"):
        try:
            kv = kernel_version(img)
        except VMError:
            continue
        mods = Path(f"/lib/modules/{kv}")
        if all(list(mods.rglob(f"{m}.ko*")) for m in ("veth", "bridge", "nf_tables")):
            found.append((bool(list(mods.rglob("sch_netem.ko*"))), kv != running, img))
    if not found:
        raise VMError("no kernel image with its modules under /boot: run  sudo ci/setup --vm  (installs QEMU "
                      "and Debian's linux-image-amd64, or Ubuntu's linux-image-generic), or set TCPLAB_VM_KERNEL")
    def version(p: Path):
        return [int(x) if x.isdigit() else x for x in re.split(r"[.-]", p.name)]
    return max(found, key=lambda f: (f[0], f[1], version(f[2])))[2]


def scratch_dir(*keep: Path) -> str:
    """A directory of the host root to hide under the guest's tmpfs: one that holds none of
    ``keep`` (the checkout, the interpreter).  The checkout may well live under /tmp."""
    for cand in ("/run", "/mnt", "/srv", "/media", "/opt"):
        if Path(cand).is_dir() and not any(str(k.resolve()).startswith(cand + "/") for k in keep):
            return cand
    raise VMError("no directory of the host root is free for the guest's scratch space "
                  "(/run, /mnt, /srv, /media and /opt all hold the checkout or its interpreter)")


def _xz(data: bytes) -> bytes:
    import lzma
    return lzma.decompress(data)


def _gz(data: bytes) -> bytes:
    import gzip
    return gzip.decompress(data)


DECOMPRESS = {".xz": _xz, ".gz": _gz}


def _module_bytes(path: Path) -> bytes:
    if path.suffix == ".zst":
        raise VMError(f"{path}: zstd-compressed modules are not supported: give a kernel whose modules are "
                      "plain, xz- or gzip-compressed (Debian's are xz or plain)")
    data = path.read_bytes()
    return DECOMPRESS[path.suffix](data) if path.suffix in DECOMPRESS else data


def build_initramfs(kver: str, dest: Path, scratch: str = "/run", modroot: Path | None = Path("/")) -> Path:
    """The guest's initramfs: busybox, the init script, and the modules the labs need (with
    their dependencies, decompressed: busybox's insmod loads plain .ko) from ``modroot``'s
    lib/modules/KVER; None: a kernel with everything built in."""
    busybox = tools.find("busybox") or "/bin/busybox"
    if not Path(busybox).exists():
        raise VMError("busybox is missing: apt-get install busybox-static (sudo ci/setup --vm)")
    order: list[str] = []
    files: dict[str, bytes] = {}
    base = Path(modroot or "/") / "lib" / "modules" / kver
    for mod in MODULES if modroot is not None else ():
        r = subprocess.run(["modprobe", "-d", str(modroot), "-S", kver, "--show-depends", mod],
                           capture_output=True, text=True)
        if r.returncode != 0 and mod in OPTIONAL_MODULES:
            continue
        if r.returncode != 0:
            raise VMError(f"kernel {kver} has no module {mod}: {r.stderr.strip()}")
        listed = [Path(ln.split()[1]) for ln in r.stdout.splitlines() if ln.split()[:1] == ["insmod"]]
        gone = [p for p in listed if not p.exists()]       # modules.dep older than the tree
        if gone and mod in OPTIONAL_MODULES:
            continue
        if gone:
            raise VMError(f"kernel {kver}: {gone[0]} is listed in modules.dep but missing: run  depmod -b "
                          f"{modroot} {kver}")
        for path in listed:
            rel = os.path.relpath(path, base)
            if path.suffix in DECOMPRESS:
                rel = rel[:-len(path.suffix)]
            if rel not in files:
                files[rel] = _module_bytes(path)
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


@dataclass
class Guest:
    """What the guest runs: ``argv`` from ``cwd`` (host paths: the guest sees the host's root
    read-only at the same paths), with ``env``.  ``{results}`` in an argument is the guest's
    path of the read-write share; the host reads what was written there in ``collect(folder)``
    before the VM's work folder goes."""
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    collect: Callable[[Path], None] | None = None


def pytest_guest(pytest_args: list[str], *, cwd: Path = REPO, env: dict[str, str] | None = None,
                 junit: Path | None = None, artifacts: Path | None = None, python: str | None = None) -> Guest:
    """pytest in the guest, its JUnit XML and failed tests' artifacts copied back."""
    def collect(results: Path) -> None:
        if junit and (results / "junit.xml").exists():
            junit.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(results / "junit.xml", junit)
        if artifacts and (results / "artifacts").is_dir():
            shutil.copytree(results / "artifacts", artifacts, dirs_exist_ok=True)
            print(f"[tcplab vm] pcaps and failure text of the failed tests: {artifacts}", flush=True)
    argv = [python or guest_python(), "-m", "pytest", *pytest_args, "--junitxml={results}/junit.xml",
            "--tcplab-artifacts={results}/artifacts"]
    return Guest(argv, cwd, dict(env or {}), collect)


def guest_python() -> str:
    """The interpreter the guest runs: this checkout's venv, else this one (the guest shares the
    host's root, so any interpreter of the host runs there unchanged)."""
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def run_vm(kernel: Path, guest: Guest, *, timeout: float, boot_timeout: float, keep: bool = False,
           accel: str = "auto", memory: str = "", cpus: int = 0, artifacts: Path | None = None) -> int:
    """Boot ``kernel``, run ``guest`` in it, return its exit status.  Every wait is bounded."""
    qemu = tools.find("qemu-system-x86_64")
    if qemu is None:
        raise VMError("qemu-system-x86_64 is missing: run  sudo ci/setup --vm")
    if not os.access(kernel, os.R_OK):
        raise VMError(f"cannot read the kernel image {kernel} (Ubuntu keeps them root-only): copy it where "
                      "you can read it and pass --kernel PATH (or TCPLAB_VM_KERNEL=PATH)")
    memory = memory or os.environ.get("TCPLAB_VM_MEMORY") or default_memory()
    cpus = cpus or int(os.environ.get("TCPLAB_VM_CPUS") or 0) or default_cpus()
    kver, modroot, lacks = check_kernel(kernel)
    work = Path(tempfile.mkdtemp(prefix="tcplab-vm-"))
    results = work / "results"
    results.mkdir()
    try:
        t0 = time.monotonic()
        python = Path(guest.argv[0])
        scratch = scratch_dir(guest.cwd, REPO, python.resolve() if python.exists() else python)
        initrd = build_initramfs(kver, work / "initramfs.cpio", scratch, modroot)
        if lacks:
            print(f"[tcplab vm] kernel {kver} lacks {', '.join(lacks)}: the labs that need it skip "
                  "(or fail, with --netem)", flush=True)
        if accel == "auto":
            ok, why = kvm_usable()
            accel = "kvm" if ok else "tcg"
            print(f"[tcplab vm] accelerator: {accel} ({why})", flush=True)
        shared = f"{scratch}/tcplab-results"
        env = {"TCPLAB_TIME_SCALE": f"{time_scale(accel):g}", **guest.env, GUEST_ENV: "1"}
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        command = " ".join(shlex.quote(a.replace("{results}", shared)) for a in guest.argv)
        (results / "run.sh").write_text(f"""
export HOME={scratch}/tmp TMPDIR={scratch}/tmp PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PYTHONDONTWRITEBYTECODE=1 PY_COLORS=0 {exports}
cd {shlex.quote(str(guest.cwd))}
echo "[guest] kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {{print int($2/1024)}}' /proc/meminfo) MiB; running: {command.replace('"', '')}"
{command}
rc=$?
echo $rc > {shared}/exit_code
exit $rc
""")
        cpu = "host" if accel == "kvm" else "max"
        cmd = [qemu, "-machine", f"q35,accel={accel}", "-cpu", cpu, "-smp", str(cpus), "-m", memory,
               "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot", "-nic", "none",
               "-kernel", str(kernel), "-initrd", str(initrd),
               "-append", "console=ttyS0 quiet panic=-1 loglevel=3",
               "-fsdev", "local,id=hr,path=/,security_model=none,readonly=on,multidevs=remap",
               "-device", "virtio-9p-pci,fsdev=hr,mount_tag=hostroot",
               "-fsdev", f"local,id=rs,path={results},security_model=none,multidevs=remap",
               "-device", "virtio-9p-pci,fsdev=rs,mount_tag=results"]
        print(f"[tcplab vm] booting {kernel} ({kver}) with {accel.upper()}, {cpus} CPU(s), {memory} "
              f"of memory{' (emulated CPU: expect a slow run)' if accel == 'tcg' else ''}", flush=True)
        from .process import die_with_parent   # QEMU never outlives us (a grader stopped by SIGKILL)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=die_with_parent)
        up = threading.Event()
        status: dict[str, int] = {}
        last_line = [time.monotonic()]
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
                last_line[0] = time.monotonic()
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            if not up.wait(boot_timeout):
                raise VMError(f"the guest showed no sign of life within {boot_timeout:g} s "
                              f"(accelerator {accel}); console log: {work / 'console.log'}")
            # A line every HEARTBEAT s while the guest is quiet, so a long run never looks hung.
            deadline = t0 + timeout
            while proc.poll() is None:
                if time.monotonic() >= deadline:
                    raise VMError(f"the VM run did not finish within {timeout:g} s: killed")
                try:
                    proc.wait(timeout=min(HEARTBEAT, max(0.1, deadline - time.monotonic())))
                except subprocess.TimeoutExpired:
                    if time.monotonic() - last_line[0] >= HEARTBEAT:
                        print(f"[tcplab vm] still running: {time.monotonic() - t0:.0f} s so far", flush=True)
                        last_line[0] = time.monotonic()
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
            raise VMError(f"the guest ended without a result; console log kept at {work / 'console.log'}")
        if guest.collect:
            guest.collect(results)
        print(f"[tcplab vm] kernel {kver}: exit {rc}; VM wall time {wall:.1f} s", flush=True)
        return rc
    except VMError as exc:
        # The console log is this failure's artifact: it goes to --artifacts when given, else the
        # work folder is kept (and named) for it.
        log_path = work / "console.log"
        if artifacts is None or not log_path.exists():
            keep = True
            raise
        artifacts.mkdir(parents=True, exist_ok=True)
        shutil.copy(log_path, artifacts / "console.log")
        raise VMError(str(exc).replace(str(log_path), str(artifacts / "console.log"))) from None
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"[tcplab vm] kept {work}", flush=True)


def own_cgroup(controller: str) -> Path | None:
    """This process's cgroup folder: of a cgroup v1 ``controller``, else of the unified hierarchy."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return Path("/sys/fs/cgroup", controller, path.lstrip("/"))
    for line in lines:
        if line.startswith("0::"):
            return Path("/sys/fs/cgroup", line[3:].lstrip("/"))
    return None


def cgroup_limits() -> tuple[float | None, int | None]:
    """(CPUs, bytes) this process may use by its cgroups' limits (None: no limit)."""
    cpus = mem = None
    d = own_cgroup("cpu")
    try:
        if d and (d / "cpu.max").exists():
            q, period = (d / "cpu.max").read_text().split()
            cpus = None if q == "max" else int(q) / int(period)
        elif d:
            q = int((d / "cpu.cfs_quota_us").read_text())
            cpus = None if q < 0 else q / int((d / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        pass
    d = own_cgroup("memory")
    try:
        if d and (d / "memory.max").exists():
            text = (d / "memory.max").read_text().strip()
            mem = None if text == "max" else int(text)
        elif d:
            mem = int((d / "memory.limit_in_bytes").read_text())
            mem = None if mem >= 1 << 60 else mem
    except (OSError, ValueError):
        pass
    return cpus, mem


def time_scale(accel: str) -> float:
    """How many times slower than this machine's CPU the guest runs: an emulated CPU (TCG) about 5
    times (measured: Python's start-up, docs/kernels.md), and a CPU quota under one CPU by its inverse.
    The guest's sandbox stretches student code's time limits by it."""
    quota, _ = cgroup_limits()
    return (5.0 if accel == "tcg" else 1.0) * (1.0 / quota if quota is not None and quota < 1 else 1.0)


def default_cpus() -> int:
    """Two CPUs, or one where this process may use less than two (a cgroup's CPU quota, as in a
    course platform's container): a second emulated CPU would only compete for the same time."""
    quota, _ = cgroup_limits()
    usable = float(len(os.sched_getaffinity(0)))
    if quota is not None:
        usable = min(usable, quota)
    return 2 if usable >= 2 else 1


def default_memory() -> str:
    """1 GiB, or less where a cgroup limits this process's memory (QEMU's own pages, the grader
    and the host's page cache come on top of the guest's): the limit less 320 MiB, at least 384 MiB."""
    _, limit = cgroup_limits()
    mib = 1024
    if limit is not None:
        mib = max(384, min(mib, limit // 2**20 - 320))
    return f"{mib}M"


def pytest_in_vm(pytest_args: list[str], *, cwd: Path) -> int:
    """``pytest ... --tcplab-vm``: the session in the VM, announced in one line; pytest's exit status."""
    try:
        kernel = default_kernel()
        print(f"[tcplab vm] running this pytest session in a VM (kernel {kernel_version(kernel)}): booting takes "
              "seconds, and without KVM the labs run several times slower", flush=True)
        env = {k: v for k, v in os.environ.items() if k.startswith("TCPLAB_") and k != "TCPLAB_VM"}
        return run_vm(kernel, pytest_guest(pytest_args, cwd=cwd, env=env, python=sys.executable),
                      timeout=float(os.environ.get("TCPLAB_VM_TIMEOUT") or 3600), boot_timeout=180)
    except VMError as exc:
        print(f"[tcplab vm] ERROR: {exc}", file=sys.stderr, flush=True)
        return 4


def junit_counts(path: Path) -> dict[str, int]:
    import xml.etree.ElementTree as ET
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    keys = ("tests", "failures", "errors", "skipped")
    return {k: sum(int(s.get(k, 0)) for s in suites) for k in keys}
