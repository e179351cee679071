"""``corruption_bar``: C-Bar read from its folder, under names of its own, up to the leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from robench.cli import main
from robench.data import load_dataset
from robench.errors import ConfigError, DataError
from robench.evaluation import METRICS, EvalContext, check_metrics
from robench.evaluation.corruption_bar import CBAR_CORRUPTIONS
from robench.pipeline import train


def write_cbar(folder: Path, test_npz: Path, names: tuple[str, ...]) -> None:
    """A C-Bar folder in its official layout. ``ripple`` holds the clean test images at every
    severity; the others the images inverted, so the two errors differ."""
    with np.load(test_npz) as arrays:
        x, y = arrays["x_test"], arrays["y_test"]
    folder.mkdir(parents=True)
    np.save(folder / "labels.npy", np.tile(y, 5).astype(np.uint8))
    for name in names:
        np.save(folder / f"{name}.npy", np.tile(x if name == "ripple" else 255 - x, (5, 1, 1, 1)))


def test_values_are_named_cbar_and_computed_from_the_folder(tiny_config, tiny_npz, tmp_path):
    cfg = tiny_config('evaluate.metrics=["clean"]')
    run = train(cfg, progress=False)
    folder = tmp_path / "CIFAR-10-C-Bar"
    write_cbar(folder, tiny_npz, ("ripple", "lines"))
    proc = main(
        [
            "evaluate", str(run), "--metrics", "corruption_bar", "--quiet",
            "--option", f'corruption_bar.source="{folder}"',
            "--option", 'corruption_bar.corruptions=["ripple", "lines"]',
        ]
    )  # fmt: skip
    assert proc == 0
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    values = metrics["corruption_bar"]
    assert set(values) == {
        "cbar_error", "cbar_rms_calibration_error", "cbar_error_ripple", "cbar_error_lines"
    }  # fmt: skip
    # ripple is the clean test set at every severity: its error is the clean error
    assert values["cbar_error_ripple"] == pytest.approx(metrics["clean"]["clean_error"])
    assert values["cbar_error"] == pytest.approx(
        (values["cbar_error_ripple"] + values["cbar_error_lines"]) / 2
    )
    settings = pd.read_csv(run / "tables" / "corruption_bar_settings.csv")
    assert settings.loc[0, "benchmark"] == "cifar-c-bar"
    # the report's leaderboard carries it, with a bootstrap interval from the records
    assert main(["report", "--results-dir", str(cfg.results_dir), "--no-plots"]) == 0
    board = pd.read_csv(Path(cfg.results_dir) / "leaderboard.csv")
    assert board.loc[0, "cbar_error"] == pytest.approx(values["cbar_error"])
    assert board.loc[0, "cbar_error_ci_low"] <= values["cbar_error"]


def test_missing_source_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="missing a required argument: 'source'"):
        check_metrics(["corruption_bar"], {})
    with pytest.raises(DataError, match=r"corruption_bar source .* is not a folder"):
        check_metrics(["corruption_bar"], {"corruption_bar": {"source": str(tmp_path / "no")}})


def test_default_names_are_the_ten_files_of_cifar10_c_bar(tiny_npz, tmp_path):
    folder = tmp_path / "bar"
    write_cbar(folder, tiny_npz, CBAR_CORRUPTIONS)
    data = load_dataset(f"npz:{tiny_npz}", "test", progress=False)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 4))
    result = METRICS.get("corruption_bar")(
        model, data, EvalContext(progress=False), source=str(folder)
    )
    assert len(CBAR_CORRUPTIONS) == 10
    assert {f"cbar_error_{n}" for n in CBAR_CORRUPTIONS} <= set(result.values)
    assert result.records["correct"].shape == (10, 5, len(data))


def test_an_imagenet_c_bar_folder_gets_its_own_ten_names(tmp_path):
    """<name>/<severity>/<class>/<image>, read as ImageNet-C; 2 classes of 2 images, 32 px."""
    from PIL import Image

    from robench.evaluation.corruption_bar import IMAGENET_CBAR_CORRUPTIONS

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("ant", "bee"):
            (tmp_path / "set" / split / cls).mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "set" / split / cls / f"{i}.png")
    for name in IMAGENET_CBAR_CORRUPTIONS:
        for severity in range(1, 6):
            for cls in ("ant", "bee"):
                folder = tmp_path / "bar" / name / str(severity) / cls
                folder.mkdir(parents=True)
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / "0.png")
    data = load_dataset(f"imagefolder:{tmp_path / 'set'}", "test", progress=False)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2))
    result = METRICS.get("corruption_bar")(
        model, data, EvalContext(progress=False), source=str(tmp_path / "bar")
    )
    assert {f"cbar_error_{n}" for n in IMAGENET_CBAR_CORRUPTIONS} <= set(result.values)
    assert result.tables["settings"].loc[0, "benchmark"] == "cifar-c-bar"  # named by size: 32 px
    assert len(result.tables["errors"]) == 50 and "mce_alexnet" not in result.values
