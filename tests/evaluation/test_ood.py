"""OOD measures (goldens, scikit-learn, hand-computed cases), scores and the metric plugin."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from robench.data.datasets import DataIdentity, ImageData
from robench.errors import ConfigError, DataError
from robench.evaluation.base import EvalContext
from robench.evaluation.functional import ood_measures
from robench.evaluation.ood import ood, ood_score

GOLDENS = Path(__file__).resolve().parents[3] / "shared" / "goldens" / "metrics.json"


def test_measures_match_goldens() -> None:
    if not GOLDENS.is_file():
        pytest.skip(f"goldens not found at {GOLDENS}")
    cases = json.loads(GOLDENS.read_text())["ood"]
    assert cases
    for case in cases:
        got = ood_measures(np.array(case["msp_in"]), np.array(case["msp_out"]))
        assert got["auroc"] == pytest.approx(case["auroc"], abs=1e-6)
        assert got["aupr"] == pytest.approx(case["aupr_ood_positive"], abs=1e-6)
        assert got["fpr95"] == pytest.approx(case["fpr_at_95_tpr"], abs=1e-6)


def test_hand_computed_tiny_case() -> None:
    # Anomaly = -MSP. OOD 0.5 is the most anomalous; OOD 0.65 beats three of four ID scores.
    got = ood_measures(np.array([0.9, 0.8, 0.7, 0.6]), np.array([0.65, 0.5]))
    assert got["auroc"] == pytest.approx(7 / 8)
    assert got["aupr"] == pytest.approx((1 + 2 / 3) / 2)
    assert got["fpr95"] == pytest.approx(1 / 4)  # full recall is reached after one ID image


def test_fpr95_takes_the_closest_recall_not_the_first_above() -> None:
    # 10 OOD: recall 0.9 (|diff| 0.04999...) beats 1.0 (0.05000...). Nine OOD images have the
    # lowest MSP; the tenth ties with five ID images, so reaching recall 1.0 flags those five
    # (FPR 0.5, the "first >= 95 %" answer) while recall 0.9 flags none.
    score_in = np.r_[np.full(5, 0.5), np.full(5, 0.8)]
    score_out = np.r_[np.full(9, 0.1), 0.5]
    assert ood_measures(score_in, score_out)["fpr95"] == 0.0


def test_auroc_and_aupr_agree_with_scikit_learn_with_ood_positive() -> None:
    rng = np.random.default_rng(0)
    score_in, score_out = rng.beta(5, 2, 700), rng.beta(2, 2, 300)
    got = ood_measures(score_in, score_out)
    is_ood = np.r_[np.zeros(700), np.ones(300)]
    anomaly = -np.r_[score_in, score_out]
    assert got["auroc"] == pytest.approx(roc_auc_score(is_ood, anomaly), abs=1e-12)
    assert got["aupr"] == pytest.approx(average_precision_score(is_ood, anomaly), abs=1e-12)
    assert got["auroc"] > 0.5  # OOD has lower MSP, so it is detected


def test_identical_distributions_give_chance_auroc() -> None:
    rng = np.random.default_rng(1)
    got = ood_measures(rng.random(5000), rng.random(5000))
    assert got["auroc"] == pytest.approx(0.5, abs=0.02)
    assert got["fpr95"] == pytest.approx(0.95, abs=0.02)


def test_scores() -> None:
    logits = torch.tensor([[0.0, np.log(3.0)], [2.0, 2.0]])
    np.testing.assert_allclose(ood_score(logits, "msp"), [0.75, 0.5])
    np.testing.assert_allclose(ood_score(logits, "energy"), [np.log(4.0), 2 + np.log(2.0)])
    np.testing.assert_allclose(ood_score(logits, "max_logit"), [np.log(3.0), 2.0])
    with pytest.raises(ValueError):
        ood_score(logits, "entropy")


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 3),
    )


def _data(name: str = "toy", n: int = 30) -> ImageData:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    identity = DataIdentity(name, "test", n, "0", "memory")
    return ImageData(images, torch.arange(n) % 3, ["a", "b", "c"], identity)


def test_metric_default_sets_and_skipped_other_cifar(tmp_path: Path) -> None:
    ctx = EvalContext(batch_size=16, progress=False, data_root=tmp_path)
    result = ood(_model(), _data("cifar10"), ctx, n_ood=12)
    sets = result.tables["sets"]
    assert list(sets["set"]) == ["gaussian", "rademacher", "blobs", "textures", "cifar100"]
    assert sets["status"].iloc[-1].startswith("skipped:")
    assert set(sets["status"].iloc[:4]) == {"evaluated"}
    assert list(sets["count"].iloc[:4]) == [12] * 4
    for key in ("auroc", "aupr", "fpr95"):
        per_set = [result.values[f"ood_{key}_{s}"] for s in sets["set"].iloc[:4]]
        assert all(0 <= v <= 100 for v in per_set)
        assert result.values[f"ood_{key}_mean"] == pytest.approx(np.mean(per_set))
    assert "ood_auroc_cifar100" not in result.values
    assert result.records["ood_score"].shape == (30,)


def test_metric_explicit_sets_load_or_fail(tmp_path: Path) -> None:
    folder = tmp_path / "My Places"
    folder.mkdir()
    for i in range(5):
        Image.new("RGB", (40 + i, 36), (50 * i, 0, 0)).save(folder / f"{i}.png")
    ctx = EvalContext(batch_size=16, progress=False, data_root=tmp_path)
    result = ood(
        _model(), _data(), ctx, sets=["rademacher", f"imagefolder:{folder}"], score="energy"
    )
    assert set(result.values) == {
        f"ood_{m}_{s}"
        for m in ("auroc", "aupr", "fpr95")
        for s in ("rademacher", "my_places", "mean")
    }
    assert result.tables["settings"].loc[0, "score"] == "energy"
    with pytest.raises(DataError, match="SVHN"):
        ood(_model(), _data(), ctx, sets=["svhn"])
    with pytest.raises(ConfigError, match="labelled"):
        ood(_model(), _data(), ctx, sets=["gaussian", "gaussian"])


def test_metric_refuses_bad_options() -> None:
    ctx = EvalContext(progress=False)
    with pytest.raises(ConfigError, match="score"):
        ood(_model(), _data(), ctx, score="odin")
    with pytest.raises(ConfigError, match="list"):
        ood(_model(), _data(), ctx, sets="gaussian")
    with pytest.raises(TypeError):
        ood(_model(), _data(), ctx, n=5)
