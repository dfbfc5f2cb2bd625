import os

import pytest

#: The labs wait on kernel timers (a SYN's 1 s, TIME_WAIT's 60 s), not on the CPU: as written,
#: `pytest labs/` runs them on this many xdist workers per core (at most MAX_WORKERS).
WORKERS_PER_CORE, MAX_WORKERS = 4, 8


def pytest_configure(config):
    """`pytest labs/` as written runs in parallel: unless the run says otherwise (-n N, -n 0,
    -p no:xdist, --pdb, --collect-only), several xdist workers, since the labs wait on timers.
    Not inside tcplab's VM, whose emulated CPU pays for every worker's start-up.  (Runs before
    xdist's own pytest_configure, which starts the workers.)"""
    from tcplab.lab import where
    opt = config.option
    if (getattr(opt, "numprocesses", 0) is not None or hasattr(config, "workerinput") or opt.collectonly
            or opt.usepdb or getattr(opt, "dist", "no") != "no" or where.current() == where.VM):
        return
    n = min(MAX_WORKERS, WORKERS_PER_CORE * len(os.sched_getaffinity(0)))
    opt.numprocesses, opt.dist, opt.tx = n, "load", ["popen"] * n


def pytest_sessionstart(session):
    """Before xdist's workers start: where no lab network can be built, stop in one line with the
    ways that work (the plugin's collection check does the same for runs without -n)."""
    from tcplab.lab import where
    access = where.arranged()
    if access is not None and not access.ok:
        pytest.exit(where.no_lab_here(access), returncode=4)
