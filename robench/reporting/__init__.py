"""Reporting: result tables, the leaderboard, plots, the report page and claims checks.

The names below load on first use, so ``robench train`` (which prints one summary row through
:mod:`robench.reporting.tables`) does not import matplotlib and the page builder."""

from __future__ import annotations

from typing import Any

from robench.registry import load_name

#: each public name and the module that defines it
_API = {
    "Report": "robench.reporting.build",
    "build_report": "robench.reporting.build",
    "report": "robench.reporting.build",
    "assert_claims": "robench.reporting.claims",
    "check_claims": "robench.reporting.claims",
    "gather_runs": "robench.reporting.tables",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return load_name(globals(), _API, name)
