import os

import pytest


@pytest.fixture(autouse=True)
def _needs_root():
    if os.geteuid() != 0:
        pytest.skip("integration tests build network namespaces: run sudo .venv/bin/python -m pytest tests/")
collect_ignore = ["hostile"]   # a graded assignment for test_sandbox.py, run by tcplab grade, not by this suite
