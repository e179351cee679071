"""The claim CI trains from scratch (baselines/claims/ci.toml on baselines/ci_pixmix.toml): it
holds on 3 seeds a side, and it fails when PixMix's augmentation is switched off, so a change
that breaks the method's effect fails CI (docs/claims.md#the-claim-ci-trains)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robench.augment.pixmix import PixMix
from robench.augment.tensor_ops import to_float
from robench.config import load_config
from robench.pipeline import train
from robench.reporting import assert_claims, check_claims
from tests.conftest import REPO, SHARED_DATA

CONFIG = REPO / "baselines" / "ci_pixmix.toml"
CLAIMS = REPO / "baselines" / "claims" / "ci.toml"
SEEDS = (0, 1, 2)


def _train(results: Path, method: str, seed: int) -> None:
    overrides = [
        f'data.dataset = "imagefolder:{SHARED_DATA}"',
        f'results_dir = "{results}"',
        f'augment.method = "{method}"',
        f"seed = {seed}",
    ]
    train(load_config(CONFIG, overrides), progress=False)


@pytest.fixture(scope="module")
def ci_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The baseline and PixMix runs of the claim: 6 short trainings."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared CIFAR-10 data is not at {SHARED_DATA}")
    base = tmp_path_factory.mktemp("ci-claim")
    results = base / "results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROBENCH_CACHE", str(base / "cache"))  # the corrupted sets, made once
        for method in ("baseline", "pixmix"):
            for seed in SEEDS:
                _train(results, method, seed)
    return results


@pytest.mark.slow
def test_the_ci_claim_holds(ci_runs: Path) -> None:
    table = assert_claims(CLAIMS, ci_runs)
    assert list(table["status"]) == ["PASS"] and list(table["n"]) == ["3 vs 3"]


@pytest.mark.slow
def test_the_ci_claim_fails_when_pixmix_is_switched_off(ci_runs: Path, tmp_path: Path) -> None:
    """PixMix's views replaced by the clean (cropped, flipped) image: the baseline in PixMix's
    clothes. The claim must not pass on those runs."""

    def clean_views(self, x: torch.Tensor, mixing, rng) -> torch.Tensor:
        return to_float(x)

    for run in (ci_runs / "runs").glob("ci_pixmix_baseline_*"):
        (tmp_path / "runs").mkdir(exist_ok=True)
        (tmp_path / "runs" / run.name).symlink_to(run)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PixMix, "batch_views", clean_views)
        mp.setenv("ROBENCH_CACHE", str(ci_runs.parent / "cache"))
        for seed in SEEDS:
            _train(tmp_path, "pixmix", seed)
    (row,) = check_claims(CLAIMS, tmp_path).itertuples()
    assert row.status != "PASS", row
    with pytest.raises(AssertionError, match="1 of 1 claims fail"):
        assert_claims(CLAIMS, tmp_path)
