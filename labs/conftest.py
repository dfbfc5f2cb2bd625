import pytest


def pytest_sessionstart(session):
    """Before xdist's workers start: where no lab network can be built, stop in one line with the
    ways that work (the plugin's collection check does the same for runs without -n)."""
    plugin = session.config.pluginmanager.get_plugin("tcplab") or \
        session.config.pluginmanager.get_plugin("fixtures.plugin")
    access = session.config.stash[plugin.ACCESS]
    if not access.ok:
        pytest.exit(plugin.no_lab_here(access), returncode=4)
