"""Typed errors.  Every message says what was wrong and what to do about it."""


class TcplabError(Exception):
    """Base class of every error tcplab raises on purpose."""


class ConfigError(TcplabError, ValueError):
    """A value given to tcplab is out of range or malformed; the message names the valid range."""


class Unsupported(TcplabError):
    """This kernel or machine lacks something a test needs.  ``reason`` is the exact cause;
    the pytest glue turns it into a skip (or, where a skip must not hide a gap, a failure)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class CaptureIncomplete(TcplabError):
    """The kernel dropped packets on a capture socket: the trace would be partial."""


class WaitTimeout(TcplabError, TimeoutError):
    """A condition polled against a deadline did not become true in time."""


class ExpectationFailed(TcplabError, AssertionError):
    """An observed exchange does not match the expected one.  ``str()`` is the full report;
    ``mismatch`` is the typed record (:class:`tcplab.observe.expect.Mismatch`: the connection,
    the script, where they part) that reports draw their pictures from."""

    def __init__(self, report: str, mismatch=None):
        super().__init__(report)
        self.mismatch = mismatch


def hide_config_errors(excinfo) -> bool:
    """For pytest's ``__tracebackhide__``: a module that does ``from .errors import
    hide_config_errors as __tracebackhide__`` keeps its frames out of the traceback of a
    :class:`ConfigError`, so pytest points at the lab line that passed the bad value or script,
    not at tcplab's parser.  Other errors keep their full traceback."""
    return excinfo.errisinstance(ConfigError)


__tracebackhide__ = hide_config_errors


def check_int(name: str, value: object, lo: int, hi: int, valid: str) -> int:
    """``value`` must be a whole number (not a bool) from ``lo`` to ``hi``; otherwise a
    :class:`ConfigError` saying ``NAME=VALUE is out of range: VALID``."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name}={value!r} is out of range: {valid}")
    return value
