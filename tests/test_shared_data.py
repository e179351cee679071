"""The README's main job, shrunk, on the CIFAR-10 data at hand (../shared/data/cifar10-jpeg)."""

from __future__ import annotations

import json

from robench.cli import main


def test_quick_config_runs_on_the_shared_data(
    shared_data, repo_root, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(repo_root)  # the config's data path is relative to the repository
    args = [
        "train",
        "baselines/quick.toml",
        "--results-dir",
        str(tmp_path),
        "--set",
        "data.train_per_class=20",
        "--set",
        "data.test_per_class=10",
        "--epochs",
        "1",
        "--quiet",
    ]
    assert main(args) == 0
    assert "clean_error" in capsys.readouterr().out
    (run,) = (tmp_path / "runs").iterdir()
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["data"]["train"]["name"] == "cifar10-jpeg"
    assert doc["data"]["train"]["count"] == 200 and doc["data"]["test"]["count"] == 100
    assert 0 <= doc["metrics"]["clean"]["clean_error"] <= 100
