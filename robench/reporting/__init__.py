"""Reporting: result tables, the leaderboard, plots, the report page and claims checks."""

from robench.reporting.build import Report, build_report, report
from robench.reporting.claims import assert_claims, check_claims
from robench.reporting.tables import gather_runs

__all__ = ["Report", "assert_claims", "build_report", "check_claims", "gather_runs", "report"]
