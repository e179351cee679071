"""Reporting: result tables, the leaderboard CSV."""

from robench.report.tables import gather_runs, report

__all__ = ["gather_runs", "report"]
