import os

import pytest


def pytest_sessionstart(session):
    if os.geteuid() != 0:
        pytest.exit("tcplab labs build network namespaces and need root: run  sudo .venv/bin/python -m pytest labs/",
                    returncode=4)
    # Root is not enough in a container without privileges: try once, fail once, with the fix.
    from tcplab.lab.netns import Namespace, NamespaceError
    ns = Namespace("preflight")
    try:
        ns.wait_created()  # raises if unshare() was refused
    except NamespaceError as exc:
        pytest.exit(f"tcplab cannot create network namespaces here: {exc}. In Docker use --privileged "
                    "(or --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add NET_RAW)", returncode=4)
    finally:
        ns.close()
