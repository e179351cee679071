"""The thin pipeline behind the CLI: config -> data -> augment -> train -> evaluate -> results.

Models trained elsewhere skip the first stages: :func:`evaluate` (``robench.evaluate``) runs the
metrics on any model and can save the numbers as a run of kind "external" beside trained ones.

Under torchrun every rank runs it; rank 0 alone reads and writes the run folder, through
:func:`robench.distributed.on_main`, so its decisions and errors reach every rank.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from robench import distributed
from robench.augment import create_augmentation
from robench.config import Config, config_from_dict, read_toml
from robench.data import ImageData, check_same_classes, load_dataset
from robench.devices import resolve_device, use_amp
from robench.errors import ConfigError, RobenchError
from robench.evaluation import (
    DEFAULT_METRICS,
    EvalContext,
    MetricResult,
    check_metrics,
)
from robench.evaluation import evaluate as evaluate_suite
from robench.io import cache_dir, derive_seed, machine_info, package_versions
from robench.models import Normalized, architecture, count_parameters, create_model
from robench.models.checkpoints import hash_state
from robench.runs import (
    EXTERNAL,
    clear_run,
    load_checkpoint,
    read_metrics,
    read_records,
    run_id,
    run_lock,
    run_name,
    runs_root,
    write_config,
    write_metrics,
    write_records,
    write_tables,
)
from robench.trackers import Tracker, open_tracker
from robench.training import Trainer


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
        image_size=cfg.data.image_size,
        crop_pct=cfg.data.crop_pct,
        workers=cfg.train.workers,
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
    with _session(cfg), _locked(run_dir):
        return _train(
            cfg, run_dir, resume, force, progress, evaluate_after, detect_anomaly, stop_after
        )


def _session(cfg: Config, device: str | None = None) -> contextlib.AbstractContextManager:
    """The torchrun process group (a no-op in a single process)."""
    kind = resolve_device(device or cfg.train.device).type
    return distributed.session(kind, cfg.train.dist_backend, cfg.train.dist_timeout_minutes)


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """The run lock, held by rank 0 (its failure stops every rank)."""
    with contextlib.ExitStack() as stack:
        distributed.on_main(lambda: stack.enter_context(run_lock(run_dir)))
        yield


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
    main = distributed.world().main
    progress = progress and main

    def plan() -> tuple[str, list[str]]:
        """("finished", metrics missing) | ("resume", []) | ("new", []). A finished run asked
        for again is not an error: its results are there (and missing metrics are added)."""
        finished = checkpoint.exists() and not force and (doc := read_metrics(run_dir))
        if finished:
            return "finished", [m for m in cfg.evaluate.metrics if m not in doc["metrics"]]
        if checkpoint.exists() and not resume:
            if not force:
                raise RobenchError(
                    f"run {run_dir} already has a checkpoint; pass --resume to continue it "
                    "or --force to start it over"
                )
            clear_run(run_dir)
        return ("resume" if resume and checkpoint.exists() else "new"), []

    state, missing = distributed.on_main(plan)
    if state == "finished":  # training finished earlier: evaluate only what is missing
        if missing and evaluate_after:
            evaluate_run(run_dir, missing, progress=progress)
        elif main:
            print(f"{run_dir.name} is already finished; its results:")
        return run_dir
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
    distributed.on_main(lambda: write_config(run_dir, cfg))
    tracker = Tracker()
    if main:
        tracker = open_tracker(cfg.log.tracker, run_dir, Path(cfg.results_dir), cfg.log.project)
    try:
        tracker.log_config(cfg.to_dict())
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
            tracker=tracker,
            log_every=cfg.log.every_steps,
        )
        if state == "resume":
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
                "processes": distributed.world().size,
                "amp_bf16": trainer.amp,
                "batch_workers": trainer.batch_workers,
                "step": trainer.step_kind,
                "seconds_this_session": time.perf_counter() - start,
                "final_train_loss": history[-1].train_loss if history else None,
                "final_train_error": history[-1].train_error if history else None,
            },
            "versions": package_versions(),
            "machine": machine_info(),
            "metrics": {},
        }
        distributed.on_main(lambda: write_metrics(run_dir, doc))
        if evaluate_after:
            evaluated = evaluate_run(
                run_dir, cfg.evaluate.metrics, test_data=test_data, progress=progress
            )
            tracker.log_final(
                {
                    f"{m}/{k}": v
                    for m, values in evaluated["metrics"].items()
                    for k, v in values.items()
                }
            )
        return run_dir
    finally:
        tracker.close()


def load_run_config(run_dir: Path) -> Config:
    if run_dir.is_file():
        raise RobenchError(
            f"{run_dir} is a file, not a run folder; to evaluate a checkpoint trained elsewhere: "
            f"robench evaluate --model NAME --checkpoint {run_dir} --dataset SPEC"
        )
    if not (run_dir / "config.toml").is_file():
        doc = read_metrics(run_dir) if run_dir.is_dir() else None
        if doc is not None and doc.get("kind") == EXTERNAL:
            raise RobenchError(
                f"{run_dir} is a model trained elsewhere; evaluate more metrics with the "
                "command that made it (robench evaluate --model ...) and --metrics"
            )
        raise RobenchError(f"{run_dir} is not a run folder (no config.toml); see results/runs/")
    return config_from_dict(read_toml(run_dir / "config.toml"))


def build_model(cfg: Config, num_classes: int) -> torch.nn.Module:
    try:
        return create_model(cfg.model.name, num_classes, **cfg.model.options)
    except TypeError as err:
        raise ConfigError(f"model.options for {cfg.model.name!r}: {err}") from None


def load_run_model(run_dir: Path, cfg: Config, num_classes: int) -> torch.nn.Module:
    model = build_model(cfg, num_classes)
    state = distributed.on_main(lambda: load_checkpoint(run_dir / "checkpoint.pt"))
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
    forward: str | None = None,
) -> dict[str, Any]:
    """Evaluate a trained run's checkpoint; merges the numbers into its metrics.json.
    ``forward`` replaces the run's ``evaluate.forward`` (the same numbers either way).

    Under torchrun each rank predicts its shard of every input and all get the whole logits.
    """
    run_dir = Path(run_dir)
    # rank 0 reads it inside the process group (train); each process before joining one
    cfg = distributed.on_main(lambda: load_run_config(run_dir))
    if forward is not None:
        cfg = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, forward=forward))
    with _session(cfg, device), _locked(run_dir):
        return _evaluate_run(run_dir, cfg, metrics, options, test_data, progress, device)


def _read_finished(run_dir: Path) -> dict[str, Any]:
    doc = read_metrics(run_dir)
    if doc is None:
        raise RobenchError(f"{run_dir} has no metrics.json: its training did not finish")
    return doc


def _evaluate_run(
    run_dir: Path,
    cfg: Config,
    metrics: list[str] | None,
    options: dict[str, dict[str, Any]] | None,
    test_data: ImageData | None,
    progress: bool,
    device: str | None,
) -> dict[str, Any]:
    _set_threads(cfg)
    names = metrics or list(DEFAULT_METRICS)
    # one --option key overrides that key only; the config's other options of the metric stay
    merged_options = {
        name: {**cfg.evaluate.options.get(name, {}), **(options or {}).get(name, {})}
        for name in {*cfg.evaluate.options, *(options or {})}
    }
    check_metrics(names, merged_options)  # before the test set is decoded and the model loaded
    world = distributed.world()
    progress = progress and world.main
    doc = distributed.on_main(lambda: _read_finished(run_dir))
    test_data = test_data or load_split(cfg, "test", progress)
    model = load_run_model(run_dir, cfg, test_data.num_classes)
    torch_device = distributed.rank_device(resolve_device(device or cfg.train.device))
    ctx = EvalContext(
        device=torch_device,
        batch_size=cfg.evaluate.batch_size,
        seed=cfg.seed,
        cache_dir=cache_dir(),
        data_root=Path(cfg.data.root) if cfg.data.root else None,
        progress=progress,
        amp=use_amp(cfg.train.amp, torch_device),
        shard=world.size > 1,
        forward=cfg.evaluate.forward,
    )
    _evaluate_into(run_dir, doc, model, test_data, names, ctx, merged_options)
    return doc


def _evaluate_into(
    run_dir: Path,
    doc: dict[str, Any],
    model: torch.nn.Module,
    data: ImageData,
    names: list[str],
    ctx: EvalContext,
    options: dict[str, dict[str, Any]],
    on_result: Callable[[str, MetricResult], None] | None = None,
) -> None:
    """Run the metrics, merging each one's numbers into the run's metrics.json, tables and
    records as soon as it is done: an interrupted evaluation keeps what it finished."""
    doc["data"]["eval"] = data.identity.to_dict()
    records = distributed.on_main(lambda: read_records(run_dir))  # keep earlier metrics' records

    def save(name: str, result: MetricResult) -> None:
        doc["metrics"][name] = result.values
        doc.setdefault("metric_options", {})[name] = options.get(name, {})
        doc.setdefault("metric_seconds", {})[name] = round(result.seconds, 3)
        doc["evaluated"] = datetime.now(UTC).isoformat(timespec="seconds")
        doc["versions"] = package_versions()
        records.update({f"{name}/{k}": v for k, v in result.records.items()})
        distributed.on_main(lambda: _write_result(run_dir, name, result, records, doc))
        if on_result is not None:
            on_result(name, result)

    evaluate_suite(model, data, names, ctx=ctx, options=options, on_result=save)


def _write_result(
    run_dir: Path,
    name: str,
    result: MetricResult,
    records: dict[str, Any],
    doc: dict[str, Any],
) -> None:
    write_tables(run_dir, name, result.tables)
    if records:
        write_records(run_dir, records)
    write_metrics(run_dir, doc)


def evaluate(
    model: torch.nn.Module,
    data: ImageData,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    device: str = "auto",
    save_to: str | Path | None = None,
    label: str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    batch_size: int = 500,
    progress: bool = True,
    ctx: EvalContext | None = None,
    on_result: Callable[[str, MetricResult], None] | None = None,
) -> dict[str, MetricResult]:
    """Evaluate any model on ``data`` with the named metrics (RobustBench's ``benchmark``).

    The model takes float pixels in [0, 1]: a :class:`~robench.models.Normalized` network (what
    :func:`~robench.models.external.load_model` returns) or a module that normalises inside;
    a bare timm network, which expects normalised input, is refused. ``save_to`` (a results
    folder, RobustBench's ``to_disk``) also writes the results as a run of kind "external"
    under ``<save_to>/runs/`` (:func:`evaluate_external`), named ``label`` on the leaderboard.
    ``ctx`` replaces ``device``, ``seed``, ``batch_size`` and ``progress``.
    """
    if save_to is None:
        _check_input(model, data)
        ctx = ctx or eval_context(device, seed=seed, batch_size=batch_size, progress=progress)
        return evaluate_suite(
            model, data, list(metrics), ctx=ctx, options=options, on_result=on_result
        )
    results: dict[str, MetricResult] = {}

    def keep(name: str, result: MetricResult) -> None:
        results[name] = result
        if on_result is not None:
            on_result(name, result)

    evaluate_external(
        model,
        data,
        metrics,
        results_dir=save_to,
        label=label,
        options=options,
        ctx=ctx or eval_context(device, seed=seed, batch_size=batch_size, progress=progress),
        on_result=keep,
    )
    return results


def eval_context(
    device: str = "auto",
    *,
    seed: int = 0,
    batch_size: int = 500,
    progress: bool = True,
    data_root: str | Path | None = None,
    forward: str = "auto",
) -> EvalContext:
    """The CLI's evaluation settings: bf16 autocast on a GPU, generated sets in the cache."""
    torch_device = resolve_device(device)
    return EvalContext(
        torch_device,
        batch_size,
        seed,
        data_root=Path(data_root) if data_root else None,
        progress=progress,
        amp=use_amp("auto", torch_device),
        forward=forward,
    )


def _check_input(model: torch.nn.Module, data: ImageData) -> None:
    """Refuse what cannot give true numbers: a bare timm network (it expects normalised input
    but gets pixels in [0, 1]) and a head whose size is not the data's number of classes."""
    net = _network(model)
    cfg = getattr(net, "pretrained_cfg", None) or {}
    if net is model and cfg.get("mean") is not None:
        mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
        raise ConfigError(
            f"this {architecture(net)} is a bare timm network, which expects input normalised "
            f"(its timm cfg: mean {mean}, std {std}), but robench feeds pixels in [0, 1]: wrap it "
            "as robench.Normalized(model, mean, std) with the mean/std it was trained with "
            "(robench.load_model does), or Normalized(model, (0, 0, 0), (1, 1, 1)) if it takes "
            "pixels in [0, 1]"
        )
    outputs = getattr(net, "num_classes", None)
    if isinstance(outputs, int) and outputs > 0 and outputs != data.num_classes:
        raise ConfigError(
            f"the model has {outputs} outputs but {data.identity.name} has {data.num_classes} "
            "classes; evaluate it on the data set it was trained for (or give num_classes)"
        )


def evaluate_external(
    model: torch.nn.Module,
    data: ImageData,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    results_dir: str | Path,
    label: str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    ctx: EvalContext | None = None,
    on_result: Callable[[str, MetricResult], None] | None = None,
) -> Path:
    """Evaluate a model trained elsewhere into ``<results_dir>/runs/<run-id>/``; returns it.

    The run is of kind "external": config name ``external``, method ``label`` (default: the
    checkpoint's file name or the pretrained tag), and a recipe that is the model's weights
    (a hash of its state dict, normalisation included), so every evaluation of the same weights,
    label, test set and seed is one run, whose metrics merge as ``evaluate_run``'s do.
    """
    names, options = list(metrics), options or {}
    check_metrics(names, options)
    _check_input(model, data)
    ctx = ctx or eval_context()
    source = dict(getattr(model, "source", None) or {})
    name = source.pop("name", None) or architecture(_network(model))
    default_label = source.pop("label", None) or name
    label = label or default_label
    config = {
        "name": EXTERNAL,
        "seed": ctx.seed,
        "data": {"dataset": data.identity.name},
        "model": {"name": name, "weights": hash_state(model)},
        "augment": {"method": label, "options": {}},
    }
    ident = {"config": config, "test_data": data.identity.content_hash}
    run_dir = runs_root(results_dir) / run_name(EXTERNAL, label, name, ctx.seed, ident)
    with _locked(run_dir):
        doc = read_metrics(run_dir) or {
            "run_id": run_dir.name,
            "kind": EXTERNAL,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": config,
            "seed": ctx.seed,
            "data": {"test": data.identity.to_dict()},
            "model": {
                "name": name,
                "parameters": count_parameters(model),
                **_inputs(model),
                "source": source,
            },
            "augment": {"method": label},
            "versions": package_versions(),
            "machine": machine_info(),
            "metrics": {},
        }
        _evaluate_into(run_dir, doc, model, data, names, ctx, options, on_result)
    return run_dir


def _network(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a :class:`Normalized` wrapper (the model itself if unwrapped)."""
    return model.model if isinstance(model, Normalized) else model


def _inputs(model: torch.nn.Module) -> dict[str, Any]:
    """The normalisation a saved evaluation records (None: the model does its own)."""
    if not isinstance(model, Normalized):
        return {"mean": None, "std": None}
    return {"mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist()}
