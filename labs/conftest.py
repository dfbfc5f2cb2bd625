import os

import pytest


def pytest_sessionstart(session):
    if os.geteuid() != 0:
        pytest.exit("tcplab labs build network namespaces and need root: run  sudo .venv/bin/python -m pytest labs/",
                    returncode=4)
