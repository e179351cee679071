"""A pytest plugin: a project's test suite checks a claims file in one line.

robench registers it with pytest (the ``pytest11`` entry point), so once robench is installed
every test suite has the ``robench_claims`` fixture::

    def test_robustness_claims(robench_claims):
        robench_claims("claims.toml", results_dir="results")

A claim that fails, or lacks the runs to be judged (unless ``allow_missing=True``), fails the
test with each such claim on a line of the assertion message. ``pytest --robench-results DIR``
points every call that names no ``results_dir`` at DIR (e.g. a store of CI's own runs).
Imports nothing heavy until a test asks for the fixture, so pytest starts as fast as before.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--robench-results",
        metavar="DIR",
        help="robench_claims: the results folder of calls that name none (default: results)",
    )


@pytest.fixture
def robench_claims(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``check(claims, results_dir=None, *, allow_missing=False)``: assert that every claim of
    the file holds on the runs in ``results_dir``; returns the claims table (a DataFrame)."""
    default = request.config.getoption("--robench-results") or "results"

    def check(
        claims: str | Path, results_dir: str | Path | None = None, *, allow_missing: bool = False
    ) -> Any:
        __tracebackhide__ = True
        from robench.reporting.claims import assert_claims

        return assert_claims(claims, results_dir or default, allow_missing=allow_missing)

    return check
