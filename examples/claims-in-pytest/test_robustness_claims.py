"""A project's test suite guarding robustness claims with robench's pytest plugin.

robench's ``robench_claims`` fixture is in every test suite once robench is installed; one line
checks a claims file against a results folder and fails the test with the failing claims.
Run it from the robench repository: ``python -m pytest examples/claims-in-pytest``.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
STORE = HERE.parents[1] / "baselines" / "reference" / "quick_suite"


def test_our_claims_hold(robench_claims):
    robench_claims(HERE / "claims.toml", STORE)
