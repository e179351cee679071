"""The pytest plugin (robench/pytest_plugin.py) as a user's test suite meets it (pytester)."""

from __future__ import annotations

from pathlib import Path

import pytest

from robench.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "claims-in-pytest"
CLAIMS = """
[defaults.recipe]
config = "quick_suite"
model = "wrn_16_2"
dataset = "cifar10-jpeg"
epochs = 3

[[claim]]
check = "ipmix.corruption_error < baseline.corruption_error"

[[claim]]
check = "ipmix.clean_error < baseline.clean_error - 20"
"""


def test_the_worked_example_passes(pytester: pytest.Pytester, repo_root: Path) -> None:
    """The documented example, run as a user runs it, against the committed reference store."""
    result = pytester.runpytest(EXAMPLE / "test_robustness_claims.py", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_failing_claims_fail_the_test_with_each_claim_named(
    pytester: pytest.Pytester, repo_root: Path
) -> None:
    claims = pytester.path / "claims.toml"
    claims.write_text(CLAIMS)
    store = repo_root / "baselines" / "reference" / "quick_suite"
    pytester.makepyfile(
        test_mine=f"""
def test_claims(robench_claims):
    robench_claims({str(claims)!r}, {str(store)!r})
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*1 of 2 claims fail:*", "*FAIL: ipmix.clean_error < baseline*"])


def test_missing_runs_fail_unless_allowed(pytester: pytest.Pytester) -> None:
    claims = pytester.path / "claims.toml"
    claims.write_text(CLAIMS)
    (pytester.path / "empty").mkdir()
    pytester.makepyfile(
        test_mine=f"""
def test_fails_closed(robench_claims):
    robench_claims({str(claims)!r})

def test_allowed(robench_claims):
    table = robench_claims({str(claims)!r}, allow_missing=True)
    assert set(table["status"]) == {{"NOT-ENOUGH-DATA"}}
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--robench-results", "empty")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*2 of 2 claims fail:*", "*NOT-ENOUGH-DATA: *no finished runs*"])
    assert main(["check", str(claims), "--results-dir", str(pytester.path / "empty")]) == 1
