"""Runs from this checkout use the installed pytest plugin (entry point ``pytest11``: tcplab =
tcplab_pytest.plugin, whose code is this repo's fixtures/ folder).  Where tcplab is importable but
not installed with its entry point (a copied checkout on PYTHONPATH), the same code is loaded from
fixtures/ here instead, never both.  Where tcplab is not importable at all (a system pytest outside
the venv, or another Python's pytest earlier on the PATH: pyenv's), the run stops with one line
saying which pytest ran, what it lacks and which to use, instead of an INTERNALERROR traceback.

No bytecode is written when running as root (no root-owned __pycache__ left in the repo)."""
import os
import sys

import pytest

if os.geteuid() == 0:
    sys.dont_write_bytecode = True
_here = os.path.dirname(os.path.abspath(__file__))

_missing = None
if "tcplab_pytest.plugin" not in sys.modules:  # entry-point plugins load before any conftest
    try:
        # the engine and what its plugin imports: a pytest of another Python finds the engine in
        # this checkout (pytest puts the rootdir on sys.path) but not its packages
        import pyroute2  # noqa: F401
        import scapy  # noqa: F401
        import tcplab  # noqa: F401
    except ImportError as exc:
        _missing = exc.name or str(exc)
    else:
        if sys.path[0] != _here:  # this repo's fixtures/, never PyPI's "fixtures"
            sys.path.insert(0, _here)
        pytest_plugins = ["fixtures.plugin"]


def which_pytest_to_use() -> str:
    venv = os.path.join(_here, ".venv", "bin", "python")
    if os.access(venv, os.X_OK):
        return f"{os.path.relpath(venv)} -m pytest labs/" + ("  (or sudo pytest labs/)" if os.geteuid() == 0 else "")
    return f"{_here}/ci/labs, which sets up this checkout's .venv (no sudo needed where the Debian packages are in)"


def pytest_configure(config):
    if not (config.pluginmanager.hasplugin("tcplab") or config.pluginmanager.hasplugin("fixtures.plugin")):
        lacks = f"lacks {_missing!r}" if _missing else "has no tcplab"
        pytest.exit(f"this pytest (pytest {pytest.__version__} of {sys.executable}) {lacks}: it is not tcplab's; "
                    f"use  {which_pytest_to_use()}", returncode=4)
