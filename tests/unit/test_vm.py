"""The VM runner's pieces that need neither root nor QEMU."""
from pathlib import Path

import pytest

from tcplab.lab.vm import VMError, _cpio_newc, kernel_version, scratch_dir


def test_scratch_never_hides_the_checkout():
    assert scratch_dir(Path("/tmp/ci/main"), Path("/root/.pyenv/bin/python3")) == "/run"
    assert scratch_dir(Path("/run/ci/main")) != "/run"


def test_scratch_without_a_free_directory_is_an_error(monkeypatch):
    monkeypatch.setattr(Path, "is_dir", lambda self: False)
    with pytest.raises(VMError, match="no directory of the host root is free"):
        scratch_dir(Path("/tmp/x"))


def test_kernel_version_from_image_name():
    assert kernel_version(Path("/boot/vmlinuz-6.1.0-56-amd64")) == "6.1.0-56-amd64"
    with pytest.raises(VMError, match="expected /boot/vmlinuz-VERSION"):
        kernel_version(Path("/boot/bzImage"))


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
