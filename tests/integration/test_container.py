"""The Dockerfile (and so the dev container, which builds it) gives a working lab in one command:
the image is built here with podman and the handshake labs run inside it, privileged, with this
checkout mounted at /lab, as `docker run --rm --privileged -v "$PWD:/lab" IMAGE pytest labs/`.

No registry is reachable here: the image's base, debian:bookworm-slim, is made from Debian's
archive with mmdebstrap and imported under that name once (kept in podman's store as a cache).
podman runs with runc and the cgroupfs manager and explicit ulimits (crun refuses this host's
hybrid cgroups; see KERNEL-NOTES), and with --network none: its default network would add a bridge,
nftables rules and ip_forward=1 to the machine's namespace, and the labs need no network but
their own."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .test_sandbox import root_namespace

pytestmark = [pytest.mark.needs_root, pytest.mark.alone]
REPO = Path(__file__).resolve().parents[2]
BASE = "docker.io/library/debian:bookworm-slim"
CA = Path("/etc/ssl/certs/ca-certificates.crt")
RUN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
LIMITS = ["--network", "none", "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=4096:8192"]


def podman(*args, timeout=900, **kw):
    return subprocess.run([*RUN, *args], capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    for tool in ("podman", "runc", "mmdebstrap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing: sudo ci/setup --container")
    if podman("image", "exists", BASE).returncode != 0:
        tar = tmp_path_factory.mktemp("base") / "base.tar"
        r = subprocess.run(["mmdebstrap", "--variant=minbase", "bookworm", str(tar)], capture_output=True,
                           text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-2000:]
        r = podman("import", str(tar), BASE)
        assert r.returncode == 0, r.stderr
    tag = f"localhost/tcplab-test:{os.getpid()}"
    build = ["build", "--isolation", "chroot", "--pull=never", "-t", tag]
    if CA.exists():   # pip's TLS inside the build trusts what this machine trusts
        build += ["-v", f"{CA}:/etc/host-ca.crt:ro", "--build-arg", "PIP_CERT=/etc/host-ca.crt"]
    r = podman(*build, str(REPO))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    yield tag
    podman("rmi", "-f", tag)


def test_the_image_runs_the_handshake_labs_with_the_checkout_mounted(image):
    before = root_namespace()
    r = podman("run", "--rm", "--privileged", *LIMITS, "-v", f"{REPO}:/lab", image, "pytest", "labs/test_handshake.py",
               timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "mode root" in out and " passed" in out and " failed" not in out, out[-3000:]
    assert root_namespace() == before      # no bridge, rule or sysctl of the container's left behind


def test_the_image_without_privileges_says_so_in_one_line(image):
    r = podman("run", "--rm", *LIMITS, "-v", f"{REPO}:/lab", image, "pytest", "labs/test_reset.py", timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 4, out[-3000:]
    assert "tcplab cannot build a lab network here" in out and "Traceback" not in out


def test_the_dev_container_builds_that_image_privileged():
    import json
    spec = json.loads((REPO / ".devcontainer" / "devcontainer.json").read_text())
    assert spec["build"] == {"dockerfile": "../Dockerfile", "context": ".."}
    assert "--privileged" in spec["runArgs"]
