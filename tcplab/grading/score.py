"""Partial credit inside a test: ``score.partial(3, "the close sends RST instead of FIN")``.

A graded test earns its full points when it passes.  Along the way it can award part of the
points for what is already right, with a reason; if a later check fails, the student keeps those
points and reads the reasons and the failure in the feedback (3 of 5 when the handshake is right
but the close sends RST).  A test that passes earns its full points whatever it awarded.
"""
from __future__ import annotations

from ..errors import ConfigError
from ..errors import hide_config_errors as __tracebackhide__  # noqa: F401  (pytest)


class Score:
    """The points of one test (``max_points`` from its ``lab(..., points=N)`` marker)."""

    def __init__(self, max_points: float):
        self.max_points = max_points
        self.awarded = 0.0
        self.reasons: list[str] = []

    def partial(self, points: float, reason: str) -> None:
        """Award ``points`` (cumulative, at most the test's maximum) for what is right so far."""
        if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
            raise ConfigError(f"score.partial({points!r}, ...): give a number of points from 0 to "
                              f"{self.max_points:g}")
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError("score.partial(points, reason): the reason is what the student reads; give one")
        if self.awarded + points > self.max_points + 1e-9:
            raise ConfigError(f"score.partial({points:g}) would award {self.awarded + points:g} of "
                              f"{self.max_points:g} points: at most {self.max_points - self.awarded:g} are left")
        self.awarded += points
        self.reasons.append(f"{points:g} of {self.max_points:g} points: {reason.strip()}")

    def final(self, passed: bool) -> float:
        return float(self.max_points) if passed else round(self.awarded, 4)
