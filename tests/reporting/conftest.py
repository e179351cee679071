"""Fixtures of fabricated results folders (see fabricate.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fabricate import PROFILE, fabricate_run


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"


@pytest.fixture
def five_methods(results: Path) -> Path:
    """The five methods on the quick recipe, three seeds each, plus a one-seed paper run."""
    for method in PROFILE:
        for seed in (0, 1, 2):
            fabricate_run(results, method, seed)
    fabricate_run(results, "ipmix", 0, config="paper_wrn40_4", model="wrn_40_4", epochs=100)
    return results
