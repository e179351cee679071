"""Experiment trackers, offline: what a run sends to TensorBoard, MLflow and W&B is read back."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robench import trackers
from robench.errors import ConfigError
from robench.pipeline import train
from robench.runs import read_metrics

LOGGED = ("log.every_steps=1",)  # the tiny set has 3 steps per epoch


def _epochs(run: Path) -> list[dict[str, str]]:
    with open(run / "train_log.csv") as f:
        return list(csv.DictReader(f))


def test_tensorboard_event_files_read_back(tiny_config) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train(tiny_config('log.tracker="tensorboard"', *LOGGED), progress=False)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "epoch/train_loss", "clean/clean_error"} <= set(scalars)
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]
    by_epoch = [e.value for e in events.Scalars("epoch/train_error")]
    assert by_epoch == pytest.approx([float(r["train_error"]) for r in _epochs(run)], rel=1e-6)
    final = events.Scalars("clean/clean_error")[0].value
    assert final == pytest.approx(read_metrics(run)["metrics"]["clean"]["clean_error"], rel=1e-6)
    assert "train.lr" in str(events.Tensors("config/text_summary")[0].tensor_proto)


def test_mlflow_local_store_reads_back(tiny_config, tmp_path, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = tiny_config('log.tracker="mlflow"', 'log.project="tiny"', *LOGGED)
    run = train(cfg, progress=False)
    client = MlflowClient(tracking_uri=(tmp_path / "results" / "mlruns").as_uri())
    (found,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert found.info.run_name == run.name and found.data.tags["robench_run_id"] == run.name
    assert found.data.params["train.lr"] == "0.05" and found.data.params["seed"] == "0"
    losses = client.get_metric_history(found.info.run_id, "train/loss")
    assert sorted(m.step for m in losses) == [1, 2, 3, 4, 5, 6]
    clean = read_metrics(run)["metrics"]["clean"]["clean_error"]
    assert found.data.metrics["clean/clean_error"] == pytest.approx(clean)


def _wandb_records(path: Path) -> list:
    """The protobuf records of a ``.wandb`` file: a 7-byte header (``:W&B``, magic, version),
    then LevelDB-log records in 32 KiB blocks (crc32c, length, type: 1 full, 2-4 pieces)."""
    from wandb.proto import wandb_internal_pb2

    data, i, parts, records = path.read_bytes(), 7, b"", []
    while i + 7 <= len(data):
        left = 32768 - i % 32768
        length, kind = int.from_bytes(data[i + 4 : i + 6], "little"), data[i + 6]
        if left < 7 or (length, kind) == (0, 0):  # the padded end of a block
            i += left
            continue
        parts, i = parts + data[i + 7 : i + 7 + length], i + 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            records.append(record)
            parts = b""
    return records


def test_wandb_offline_run_holds_config_history_and_summary(tiny_npz, tmp_path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env |= {"WANDB_CONFIG_DIR": str(tmp_path / "cfg"), "WANDB_CACHE_DIR": str(tmp_path / "cache")}
    args = ["train", "--dataset", f"npz:{tiny_npz}", "--model", "wrn_16_2", "--epochs", "2"]
    args += ["--set", "train.batch_size=16", "--set", 'log.tracker="wandb"', "--quiet"]
    args += ["--set", "log.every_steps=1", "--set", 'evaluate.metrics=["clean"]']
    args += ["--results-dir", str(tmp_path / "results")]
    subprocess.run([sys.executable, "-m", "robench.cli", *args], check=True, env=env)
    (run,) = (tmp_path / "results" / "runs").iterdir()
    (log,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    records = _wandb_records(log)

    def values(kind: str) -> list[dict]:
        """Per record of ``kind``: its items by key (W&B nests "a/b" keys as parts)."""
        out = []
        for r in records:
            if r.WhichOneof("record_type") == kind:
                items = getattr(r, kind).item if kind == "history" else getattr(r, kind).update
                out.append(
                    {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
                )
        return out

    assert [h["_step"] for h in values("history") if "train/loss" in h] == [1, 2, 3, 4, 5, 6]
    (config,) = values("config")
    assert config["train"]["lr"] == 0.1 and config["log"]["tracker"] == "wandb"
    summary = {k: v for update in values("summary") for k, v in update.items()}
    clean = read_metrics(run)["metrics"]["clean"]["clean_error"]
    assert summary["clean/clean_error"] == pytest.approx(clean)


def test_a_missing_tracker_package_is_one_clear_error(tiny_config, monkeypatch) -> None:
    def missing(name: str):
        raise ImportError(name)

    monkeypatch.setattr(trackers.importlib, "import_module", missing)
    with pytest.raises(
        ConfigError, match=r'needs the wandb package: pip install "robench\[trackers'
    ):
        train(tiny_config('log.tracker="wandb"'), progress=False)


def test_tracking_does_not_change_the_run(tiny_config) -> None:
    """The [log] section is not part of the run's identity: same run id, same numbers."""
    plain = train(tiny_config(), progress=False)
    logged = tiny_config(
        'log.tracker="tensorboard"', 'results_dir="' + str(plain.parent.parent) + '2"'
    )
    tracked = train(logged, progress=False)
    assert tracked.name == plain.name
    assert read_metrics(tracked)["metrics"] == read_metrics(plain)["metrics"]
