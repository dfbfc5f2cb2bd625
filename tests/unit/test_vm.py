"""The VM runner's pieces that need neither root nor QEMU."""
from pathlib import Path

import pytest

from tcplab.lab.vm import (NEEDED, WANTED, VMError, _cpio_newc, check_kernel, kernel_version, resolve_kernel,
                           scratch_dir)


def test_scratch_never_hides_the_checkout():
    assert scratch_dir(Path("/tmp/ci/main"), Path("/root/.pyenv/bin/python3")) == "/run"
    assert scratch_dir(Path("/run/ci/main")) != "/run"


def test_scratch_without_a_free_directory_is_an_error(monkeypatch):
    monkeypatch.setattr(Path, "is_dir", lambda self: False)
    with pytest.raises(VMError, match="no directory of the host root is free"):
        scratch_dir(Path("/tmp/x"))


def _bzimage(path: Path, version: str) -> Path:
    """A file with an x86 boot header whose kernel_version field points at ``version``."""
    import struct
    data = bytearray(0x3000)
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x20E, 0x2000 - 0x200)
    data[0x2000:0x2000 + len(version) + 1] = version.encode() + b" (someone@build) #1 SMP\0"[:len(version) + 1]
    path.write_bytes(bytes(data))
    return path


def test_kernel_version_from_image_name_or_its_boot_header(tmp_path):
    assert kernel_version(Path("/boot/vmlinuz-6.1.0-56-amd64")) == "6.1.0-56-amd64"
    assert kernel_version(_bzimage(tmp_path / "bzImage", "6.13.0-rc1-dirty")) == "6.13.0-rc1-dirty"
    (tmp_path / "notes.txt").write_text("not a kernel")
    with pytest.raises(VMError, match="is not a bootable x86 kernel image .*give a bzImage"):
        kernel_version(tmp_path / "notes.txt")
    with pytest.raises(VMError, match="cannot read the kernel image"):
        kernel_version(tmp_path / "bzImage.missing")


def _build_tree(tmp_path: Path, config: str, modules=()) -> Path:
    """A kernel build tree: arch/x86/boot/bzImage, .config, and modules installed beside it."""
    image = _bzimage(tmp_path / "linux" / "arch" / "x86" / "boot" / "bzImage", "6.99.0") \
        if (tmp_path / "linux" / "arch" / "x86" / "boot").mkdir(parents=True) is None else None
    (tmp_path / "linux" / ".config").write_text(config)
    return image


ALL_BUILT_IN = "\n".join(f"CONFIG_{o}=y" for o in (*NEEDED, *WANTED)) + "\n"


def test_a_kernel_with_everything_built_in_needs_no_modules(tmp_path):
    image = _build_tree(tmp_path, ALL_BUILT_IN)
    assert check_kernel(image) == ("6.99.0", None, [])


def test_a_kernel_without_netem_boots_and_says_what_skips(tmp_path):
    image = _build_tree(tmp_path, ALL_BUILT_IN.replace("CONFIG_NET_SCH_NETEM=y", "# CONFIG_NET_SCH_NETEM is not set"))
    assert check_kernel(image)[2] == ["CONFIG_NET_SCH_NETEM"]


def test_a_kernel_that_cannot_run_the_labs_is_refused_with_the_list(tmp_path):
    config = ALL_BUILT_IN.replace("CONFIG_VETH=y", "CONFIG_VETH=m").replace("CONFIG_9P_FS=y\n", "")
    image = _build_tree(tmp_path, config)
    with pytest.raises(VMError) as err:
        check_kernel(image)
    assert "lacks what the labs need to boot and run: CONFIG_VETH (=y, or =m with veth.ko" in str(err.value)
    assert "CONFIG_9P_FS (=y, or =m with 9p.ko" in str(err.value)


def test_a_module_counts_where_it_is_installed(tmp_path):
    image = _build_tree(tmp_path, ALL_BUILT_IN.replace("CONFIG_VETH=y", "CONFIG_VETH=m"))
    with pytest.raises(VMError, match=r"CONFIG_VETH \(=y, or =m with veth.ko in lib/modules/6.99.0 beside the image\)"):
        check_kernel(image)
    mods = tmp_path / "linux" / "lib" / "modules" / "6.99.0" / "kernel" / "drivers" / "net"
    mods.mkdir(parents=True)       # make modules_install INSTALL_MOD_PATH=. in the build tree
    (mods / "veth.ko.xz").write_bytes(b"")
    assert check_kernel(image)[:2] == ("6.99.0", tmp_path / "linux")


def test_an_image_without_its_configuration_is_refused_before_booting(tmp_path):
    image = _bzimage(tmp_path / "bzImage", "6.99.0")
    with pytest.raises(VMError, match="no build configuration .* Put config-6.99.0 beside the image"):
        check_kernel(image)


def test_kernel_names_a_line_or_a_path(tmp_path):
    with pytest.raises(VMError, match="no such kernel image .*6.1, 6.12"):
        resolve_kernel("6.7")
    image = _bzimage(tmp_path / "bzImage", "6.99.0")
    assert resolve_kernel(str(image)) == image


def test_cpio_newc_layout():
    data = _cpio_newc([("bin", 0o40755, b""), ("init", 0o100755, b"#!/bin/sh\n")])
    assert data.startswith(b"070701")
    assert b"init\0" in data and b"#!/bin/sh\n" in data
    assert data.rstrip(b"\0").endswith(b"TRAILER!!!")
    assert len(data) % 4 == 0
    # the header of "init": mode and file size in hex at their fixed offsets
    i = data.index(b"070701", 8)
    hdr = data[i:i + 110]
    assert int(hdr[14:22], 16) == 0o100755 and int(hdr[54:62], 16) == len(b"#!/bin/sh\n")
