"""``python -m tcplab doctor``: what this machine can do for the labs, each line OK or what to do."""
from __future__ import annotations

import ctypes.util
import os
import platform
from dataclasses import dataclass

from .. import tools


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def run_checks(access=None) -> list[Check]:
    """``access``: how this process builds labs (:func:`tcplab.lab.where.arrange`, which may enter a
    user namespace: call it before any thread starts)."""
    from ..lab import where
    access = access or where.arrange()
    if not access.ok:
        from .grade import vm_missing
        missing = vm_missing()
        if missing is None:
            return [Check("mode", True, f"vm: no lab network can be built here ({access.why}), so labs run in "
                          f"the VM: pytest --tcplab-vm labs/  (tcplab grade uses it by itself; {where.LIMITS['vm']})")]
        return [Check("mode", False, f"no lab network can be built here ({access.why}); run as root "
                      f"(sudo; in Docker: --privileged), or install the VM (sudo ci/setup --vm): {missing}")]
    checks = [Check("mode", True, f"{access.mode}" + (f" (cannot here: {where.LIMITS[access.mode]})"
                                                       if where.LIMITS[access.mode] else ""))]
    from ..wire.netns import Namespace
    try:
        with Namespace("doctor") as ns:
            def veth():
                from pyroute2 import IPRoute
                with IPRoute() as ipr:
                    ipr.link("add", ifname="d0", kind="veth", peer={"ifname": "d1"})
                    ipr.link("add", ifname="br0", kind="bridge")
                return True
            ns.run(veth)
            knobs = {k: ns.has_sysctl(k) for k in ("net.ipv4.tcp_syn_linear_timeouts", "net.ipv4.tcp_rto_min_us")}
        checks.append(Check("namespaces, veth, bridge", True, "anonymous network namespaces with veth and bridge work"))
    except Exception as exc:
        checks.append(Check("namespaces, veth, bridge", False, f"{exc}"))
        return checks
    from ..wire.impair import probe_netem, probe_nft
    ok, why = probe_netem()
    checks.append(Check("sch_netem", ok, why + ("" if ok else
                        "; netem labs (delay, reorder, ...) will skip; random loss falls back to nftables"),
                        required=False))
    nft_cli = tools.find("nft")
    checks.append(Check("nftables CLI", nft_cli is not None, nft_cli or tools.missing("nft"), required=False))
    ok, why = probe_nft()
    checks.append(Check("nftables (kernel, bridge family)", ok, why + ("" if ok else
                        "; the labs with exact drops or random loss skip, saying so"), required=False))
    pcap = ctypes.util.find_library("pcap")
    checks.append(Check("libpcap", pcap is not None,
                        pcap or "missing: apt-get install libpcap0.8 (Scapy BPF filters; tcplab works without)",
                        required=False))
    try:
        from ..wire.netns import Namespace as N
        from ..lab.topology import _disable_offloads
        with N("offload") as ns:
            def off():
                from pyroute2 import IPRoute
                with IPRoute() as ipr:
                    ipr.link("add", ifname="o0", kind="veth", peer={"ifname": "o1"})
                _disable_offloads("o0")
            ns.run(off)
        checks.append(Check("offload control (ethtool ioctl)", True, "TSO/GSO/checksum offloads can be turned off"))
    except Exception as exc:
        checks.append(Check("offload control (ethtool ioctl)", False, f"{exc}: captures would show merged segments"))
    checks.append(Check("tcp_syn_linear_timeouts", True,
                        "present (set to 0: classic 1, 2, 4 s SYN backoff)" if knobs["net.ipv4.tcp_syn_linear_timeouts"]
                        else "absent (kernel < 6.5): SYN backoff is classic already", required=False))
    checks.append(Check("tcp_rto_min_us", True,
                        "present (6.11+); tcplab uses the locked route metric rto_min, which works on every kernel"
                        if knobs["net.ipv4.tcp_rto_min_us"] else
                        "absent (kernel < 6.11); tcplab uses the locked route metric rto_min instead", required=False))
    from ..observe.states import unavailable
    why = unavailable()
    checks.append(Check("state timeline", why is None, "sock:inet_sock_set_state through perf_event_open" if why is None
                        else f"{why}: labs that need the exact sequence of states skip; state checks poll sock_diag",
                        required=False))
    from ..grading.sandbox import SANDBOX_TOOLS
    for tool in SANDBOX_TOOLS:
        path = tools.find(tool)
        checks.append(Check(f"program {tool}", path is not None,
                            path or tools.missing(tool, "the sandbox for student code; only grading needs it"),
                            required=False))
    for prog in ("curl", "nc", "socat", "tcpdump"):
        path = tools.find(prog)
        checks.append(Check(f"program {prog}", path is not None,
                            path or tools.missing(prog, "only the external-program lab variants use it"),
                            required=False))
    return checks


def main(argv: list[str] | None = None) -> int:
    import argparse
    argparse.ArgumentParser(prog="tcplab doctor", description=__doc__.split("\n")[0].strip("`")
                            + " Exit 0: the labs can run; 4: something they need is missing.").parse_args(argv or [])
    from ..wire.impair import chosen_backend
    print(f"tcplab doctor: kernel {platform.release()} ({platform.machine()})")
    checks = run_checks()
    for c in checks:
        mark = "OK     " if c.ok else ("MISSING" if c.required else "absent ")
        print(f"  {mark} {c.name}: {c.detail}")
    ready = all(c.ok for c in checks if c.required)
    if ready and checks[0].detail.startswith("vm:"):
        print("labs can run in the VM: pytest --tcplab-vm labs/")
    elif ready:
        print(f"  backend for statistical impairments: {chosen_backend(os.environ.get('TCPLAB_BACKEND'))} "
              f"(override with TCPLAB_BACKEND=netem|nft or --tcplab-backend)")
        absent = [c.name for c in checks if not c.ok]
        print("labs can run: pytest labs/  (as root, or as yourself: rootless where user namespaces work)"
              + (f"; the labs that need what is absent here ({', '.join(absent)}) skip, each saying why" if absent
                 else ""))
    else:
        print("labs cannot run until the MISSING items are fixed (sudo ci/setup installs the packages)")
    return 0 if ready else 4
