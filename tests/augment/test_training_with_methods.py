"""A short training run with each method on the CIFAR-10 data at hand completes and learns."""

from __future__ import annotations

import pytest

from robench.config import load_config
from robench.pipeline import train
from robench.runs import read_metrics

METHODS = ["baseline", "cutmix", "mixup", "augmix", "pixmix", "ipmix"]
MIXING = {"pixmix", "ipmix"}


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_method_trains_and_learns(method, shared_data, repo_root, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))
    overrides = [
        f'data.dataset="imagefolder:{shared_data}"',
        "data.train_per_class=100",
        "data.test_per_class=50",
        "train.epochs=4",
        "train.batch_size=50",
        'model.name="test_resnet"',  # timm's 0.37 M test network: 10x WRN-16-2's speed on a CPU
        f'augment.method="{method}"',
        f'results_dir="{tmp_path}"',
    ]
    if method in MIXING:  # a small fractal set keeps the test fast
        overrides.append("augment.options={mixing_count = 50}")
    cfg = load_config(repo_root / "baselines" / "quick.toml", overrides)
    doc = read_metrics(train(cfg, progress=False))
    assert doc["augment"]["method"] == method
    assert doc["data"]["test"]["count"] == 500
    # chance is 90 % error; 500 test images put its 3-sigma band near 86 %
    assert doc["metrics"]["clean"]["clean_error"] < 80.0, doc["metrics"]["clean"]
