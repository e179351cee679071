"""The fault-injection suite records what it tried; with ROBENCH_UPDATE_README=1 it writes the
table into docs/reliability.md (between the reliability-table markers).

Each test names its fault with ``@pytest.mark.fault("what was done", "what must happen")``; a
parametrized test counts once per case.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"  # the page with the table
START, END = "<!-- reliability-table:start -->", "<!-- reliability-table:end -->"
_tried: dict[tuple[str, str], list[str]] = defaultdict(list)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault(what, expected): a fault the suite injects")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("fault")
    if marker is not None and report.when == "call":
        _tried[tuple(marker.args)].append(report.outcome)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _tried or os.environ.get("ROBENCH_UPDATE_README") != "1":
        return
    lines = [
        START,
        "| fault injected | times | expected outcome | result |",
        "|---|---|---|---|",
    ]
    for (what, expected), outcomes in sorted(_tried.items()):
        passed = outcomes.count("passed")
        result = "as expected" if passed == len(outcomes) else f"{len(outcomes) - passed} FAILED"
        lines.append(
            f"| {what} | {len(outcomes)} | {expected} | {result} ({passed}/{len(outcomes)}) |"
        )
    lines.append(END)
    text = README.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    README.write_text(head + "\n".join(lines) + tail)
