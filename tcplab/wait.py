"""Polling against a deadline: the one way tcplab waits for a condition it cannot block on."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

from .errors import WaitTimeout

T = TypeVar("T")


def until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.002,
          max_interval: float = 0.05) -> T:
    """Call ``check`` until it returns a truthy value, and return that value.

    The interval starts at ``interval`` and doubles up to ``max_interval``.  Raises
    :class:`WaitTimeout` naming ``what`` (and the last value seen) once ``timeout`` seconds pass.
    """
    deadline = time.monotonic() + timeout
    last: T = check()
    while not last:
        now = time.monotonic()
        if now >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what} (last seen: {last!r})")
        time.sleep(min(interval, deadline - now))
        interval = min(interval * 2, max_interval)
        last = check()
    return last
