"""The thin pipeline behind the CLI: config -> data -> augment -> train -> evaluate -> results."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from robench.augment import create_augmentation
from robench.config import Config, config_from_dict, read_toml
from robench.data import ImageData, check_same_classes, load_dataset
from robench.errors import ConfigError, RobenchError
from robench.evaluate import (
    DEFAULT_METRICS,
    EvalContext,
    MetricResult,
    check_metrics,
    evaluate,
)
from robench.io import cache_dir, derive_seed, machine_info, package_versions
from robench.models import count_parameters, create_model
from robench.runs import (
    clear_run,
    load_checkpoint,
    read_metrics,
    read_records,
    run_id,
    run_lock,
    runs_root,
    write_config,
    write_metrics,
    write_records,
    write_tables,
)
from robench.train import Trainer, resolve_device, use_amp


def load_split(cfg: Config, split: str, progress: bool = True) -> ImageData:
    per_class = cfg.data.train_per_class if split == "train" else cfg.data.test_per_class
    return load_dataset(
        cfg.data.dataset,
        split,
        root=cfg.data.root or None,
        per_class=per_class,
        subset_seed=cfg.data.subset_seed,
        progress=progress,
        download=cfg.data.download,
    )


def _set_threads(cfg: Config) -> None:
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)


def train(
    cfg: Config,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    evaluate_after: bool = True,
    detect_anomaly: bool = False,
    stop_after: int | None = None,
) -> Path:
    """Train one run (and evaluate it with ``cfg.evaluate``); returns its run folder.

    ``stop_after`` ends the session after that many epochs (checkpoint kept, no metrics): what an
    interrupted run leaves behind, to be continued with ``resume=True``.
    """
    run_dir = runs_root(cfg.results_dir) / run_id(cfg)
    with run_lock(run_dir):
        return _train(
            cfg, run_dir, resume, force, progress, evaluate_after, detect_anomaly, stop_after
        )


def _train(
    cfg: Config,
    run_dir: Path,
    resume: bool,
    force: bool,
    progress: bool,
    evaluate_after: bool,
    detect_anomaly: bool,
    stop_after: int | None,
) -> Path:
    _set_threads(cfg)
    if evaluate_after:  # a typo in the metrics must not surface only after hours of training
        check_metrics(cfg.evaluate.metrics, cfg.evaluate.options)
    checkpoint = run_dir / "checkpoint.pt"
    if resume and checkpoint.exists() and (doc := read_metrics(run_dir)) is not None:
        # training finished earlier: evaluate only what is missing
        missing = [m for m in cfg.evaluate.metrics if m not in doc["metrics"]]
        if missing and evaluate_after:
            evaluate_run(run_dir, missing, progress=progress)
        elif progress:
            print(f"{run_dir.name} is already finished")
        return run_dir
    if checkpoint.exists() and not resume:
        if not force:
            raise RobenchError(
                f"run {run_dir} already has a checkpoint; pass --resume to continue it "
                "or --force to start it over"
            )
        clear_run(run_dir)
    train_data = load_split(cfg, "train", progress)
    test_data = load_split(cfg, "test", progress)
    check_same_classes(train_data, test_data)
    torch.manual_seed(derive_seed(cfg.seed, "init"))  # the initial weights come from the seed
    model = build_model(cfg, train_data.num_classes)
    plugin = create_augmentation(
        cfg.augment.method,
        num_classes=train_data.num_classes,
        image_size=train_data.image_size,
        **cfg.augment.options,
    )
    write_config(run_dir, cfg)
    trainer = Trainer(
        model,
        plugin,
        train_data,
        cfg.train,
        seed=cfg.seed,
        checkpoint=checkpoint,
        log_csv=run_dir / "train_log.csv",
        progress=progress,
        detect_anomaly=detect_anomaly,
    )
    if resume and checkpoint.exists():
        done = trainer.resume()
        if progress:
            print(f"resuming {run_dir.name} after epoch {done}/{cfg.train.epochs}")
    start = time.perf_counter()
    history = trainer.fit(stop_after)
    if len(history) < cfg.train.epochs:
        return run_dir
    doc: dict[str, Any] = {
        "run_id": run_dir.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "data": {"train": train_data.identity.to_dict(), "test": test_data.identity.to_dict()},
        "model": {"name": cfg.model.name, "parameters": count_parameters(model)},
        "augment": {"method": cfg.augment.method, **plugin.describe()},
        "training": {
            "epochs": cfg.train.epochs,
            "device": str(trainer.device),
            "amp_bf16": trainer.amp,
            "seconds_this_session": time.perf_counter() - start,
            "final_train_loss": history[-1].train_loss if history else None,
            "final_train_error": history[-1].train_error if history else None,
        },
        "versions": package_versions(),
        "machine": machine_info(),
        "metrics": {},
    }
    write_metrics(run_dir, doc)
    if evaluate_after:
        evaluate_run(run_dir, cfg.evaluate.metrics, test_data=test_data, progress=progress)
    return run_dir


def load_run_config(run_dir: Path) -> Config:
    if not (run_dir / "config.toml").is_file():
        raise RobenchError(f"{run_dir} is not a run folder (no config.toml); see results/runs/")
    return config_from_dict(read_toml(run_dir / "config.toml"))


def build_model(cfg: Config, num_classes: int) -> torch.nn.Module:
    try:
        return create_model(cfg.model.name, num_classes, **cfg.model.options)
    except TypeError as err:
        raise ConfigError(f"model.options for {cfg.model.name!r}: {err}") from None


def load_run_model(run_dir: Path, cfg: Config, num_classes: int) -> torch.nn.Module:
    model = build_model(cfg, num_classes)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as err:
        first = str(err).splitlines()[0]
        raise RobenchError(
            f"checkpoint in {run_dir} does not fit {cfg.model.name} ({first})"
        ) from None
    return model


def evaluate_run(
    run_dir: Path,
    metrics: list[str] | None = None,
    *,
    options: dict[str, dict[str, Any]] | None = None,
    test_data: ImageData | None = None,
    progress: bool = True,
    device: str | None = None,
) -> dict[str, Any]:
    """Evaluate a trained run's checkpoint; merges the numbers into its metrics.json."""
    run_dir = Path(run_dir)
    with run_lock(run_dir):
        return _evaluate_run(run_dir, metrics, options, test_data, progress, device)


def _evaluate_run(
    run_dir: Path,
    metrics: list[str] | None,
    options: dict[str, dict[str, Any]] | None,
    test_data: ImageData | None,
    progress: bool,
    device: str | None,
) -> dict[str, Any]:
    cfg = load_run_config(run_dir)
    _set_threads(cfg)
    doc = read_metrics(run_dir)
    if doc is None:
        raise RobenchError(f"{run_dir} has no metrics.json: its training did not finish")
    test_data = test_data or load_split(cfg, "test", progress)
    model = load_run_model(run_dir, cfg, test_data.num_classes)
    torch_device = resolve_device(device or cfg.train.device)
    ctx = EvalContext(
        device=torch_device,
        batch_size=cfg.evaluate.batch_size,
        seed=cfg.seed,
        cache_dir=cache_dir(),
        data_root=Path(cfg.data.root) if cfg.data.root else None,
        progress=progress,
        amp=use_amp(cfg.train.amp, torch_device),
    )
    names = metrics or list(DEFAULT_METRICS)
    merged_options = {**cfg.evaluate.options, **(options or {})}
    doc["data"]["eval"] = test_data.identity.to_dict()
    records = read_records(run_dir)  # keep the records of metrics evaluated earlier

    def save(name: str, result: MetricResult) -> None:
        """Write each metric as soon as it is done: an interrupted evaluation keeps it."""
        doc["metrics"][name] = result.values
        doc.setdefault("metric_options", {})[name] = merged_options.get(name, {})
        doc.setdefault("metric_seconds", {})[name] = round(result.seconds, 3)
        doc["evaluated"] = datetime.now(UTC).isoformat(timespec="seconds")
        doc["versions"] = package_versions()
        write_tables(run_dir, name, result.tables)
        records.update({f"{name}/{k}": v for k, v in result.records.items()})
        if records:
            write_records(run_dir, records)
        write_metrics(run_dir, doc)

    evaluate(model, test_data, names, ctx=ctx, options=merged_options, on_result=save)
    return doc
