"""Weight-space analysis of finished runs: where the update went, how solutions relate, how flat they are,
how held-out judges see them, and how far they moved from the base. See README.md and docs/analysis.md."""

from .analyze import AnalysisOptions, analyze

__all__ = ["AnalysisOptions", "analyze"]
