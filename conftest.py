"""Runs from this checkout use the installed pytest plugin (entry point ``pytest11``: tcplab =
tcplab_pytest.plugin, whose code is this repo's fixtures/ folder).  If the environment lacks it
(tcplab not installed in the interpreter running pytest), the run stops with the set-up command
instead of 36 ``ModuleNotFoundError``s.

No bytecode is written when running as root (no root-owned __pycache__ left in the repo)."""
import os
import sys

import pytest

if os.geteuid() == 0:
    sys.dont_write_bytecode = True


def pytest_configure(config):
    if not config.pluginmanager.hasplugin("tcplab"):
        here = os.path.dirname(os.path.abspath(__file__))
        try:
            import tcplab  # noqa: F401
            why = "its pytest plugin is not registered (reinstall: sudo ci/setup)"
        except ImportError:
            why = f"tcplab is not installed for {sys.executable}"
        pytest.exit(f"{why}. Set up this checkout first with  sudo {here}/ci/setup  then run  "
                    "sudo pytest labs/  (or  sudo .venv/bin/python -m pytest labs/)", returncode=4)
