"""Grading: scores, partial credit, the results formats course platforms read, assignments and
the sandbox student code runs in."""
from .assignment import Assignment
from .results import VISIBILITIES, Gradebook, TestResult
from .sandbox import Limits, Outcome, Sandbox
from .score import Score

__all__ = ["Gradebook", "TestResult", "Score", "VISIBILITIES", "Assignment", "Sandbox", "Limits", "Outcome"]
