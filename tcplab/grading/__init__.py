"""Grading: scores, partial credit and the results formats course platforms read."""
from .results import VISIBILITIES, Gradebook, TestResult
from .score import Score

__all__ = ["Gradebook", "TestResult", "Score", "VISIBILITIES"]
