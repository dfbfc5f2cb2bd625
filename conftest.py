"""Runs from this checkout use the installed pytest plugin (entry point ``pytest11``: tcplab =
tcplab_pytest.plugin, whose code is this repo's fixtures/ folder).  Where tcplab is importable but
not installed with its entry point (a copied checkout on PYTHONPATH), the same code is loaded from
fixtures/ here instead, never both.  Where tcplab is not importable at all (a system pytest outside
the venv), the run stops with the set-up command instead of 36 ``ModuleNotFoundError``s.

No bytecode is written when running as root (no root-owned __pycache__ left in the repo)."""
import os
import sys

import pytest

if os.geteuid() == 0:
    sys.dont_write_bytecode = True
_here = os.path.dirname(os.path.abspath(__file__))

if "tcplab_pytest.plugin" not in sys.modules:  # entry-point plugins load before any conftest
    try:
        import tcplab  # noqa: F401
    except ImportError:
        pass
    else:
        if sys.path[0] != _here:  # this repo's fixtures/, never PyPI's "fixtures"
            sys.path.insert(0, _here)
        pytest_plugins = ["fixtures.plugin"]


def pytest_configure(config):
    if not (config.pluginmanager.hasplugin("tcplab") or config.pluginmanager.hasplugin("fixtures.plugin")):
        pytest.exit(f"tcplab is not installed for {sys.executable}. Set up this checkout first with  "
                    f"sudo {_here}/ci/setup  then run  sudo pytest labs/  (or  sudo .venv/bin/python -m pytest "
                    "labs/)", returncode=4)
