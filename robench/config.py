"""Experiment configs: TOML in, validated dataclasses out, one clear error line per mistake.

A config has sections ``[data]``, ``[model]``, ``[augment]``, ``[train]``, ``[evaluate]`` and
top-level ``name``, ``seed``, ``results_dir``. Every key is declared below with its type and
allowed range; anything else is rejected with a message naming the key and what is allowed.
CLI overrides use the same dotted keys: ``--set train.epochs=3``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robench.errors import ConfigError

#: the full evaluator suite, in the order it runs (the default of ``evaluate.metrics``)
ALL_METRICS = ["clean", "corruption", "calibration", "flip", "pgd", "ood"]


def _range(
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[Any, ...] = (),
    gt: float | None = None,
) -> Any:
    return {"lo": lo, "hi": hi, "choices": choices, "gt": gt}


def _f(default: Any, *, doc: str, **check: Any) -> Any:
    meta = {"doc": doc, **_range(**check)}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    dataset: str = _f("cifar10", doc="cifar10 | cifar100 | imagefolder:<path> | npz:<path>")
    root: str = _f("", doc="data root (else $ROBENCH_DATA, else ./data)")
    train_per_class: int = _f(0, doc="training images per class, 0 = all", lo=0)
    test_per_class: int = _f(0, doc="test images per class, 0 = all", lo=0)
    subset_seed: int = _f(0, doc="seed of the per-class subset draw", lo=0)
    download: bool = _f(False, doc="let torchvision download cifar10/cifar100 when online")
    image_size: int = _f(
        0,
        doc="0: decode the set into memory as stored; N: stream an imagefolder from disk at N px "
        "(train RandomResizedCrop + flip, test Resize + CenterCrop)",
        lo=0,
    )
    crop_pct: float = _f(
        0.875, doc="test centre crop: Resize(image_size / crop_pct)", lo=0.01, hi=1.0
    )


@dataclass
class ModelConfig:
    name: str = _f("wrn_40_2", doc="a timm model name (CIFAR archs: wrn_16_2, wrn_40_2, ...)")
    options: dict[str, Any] = _f(
        {}, doc="keyword args for timm.create_model, e.g. {drop_rate = 0.3}"
    )


@dataclass
class AugmentConfig:
    method: str = _f("baseline", doc="augmentation plugin name (robench list)")
    options: dict[str, Any] = _f({}, doc="plugin options, e.g. {jsd = false}")


@dataclass
class TrainConfig:
    epochs: int = _f(100, doc="training epochs", lo=1)
    batch_size: int = _f(128, doc="images per step (before JSD views)", lo=1)
    lr: float = _f(0.1, doc="peak learning rate", gt=0.0)
    lr_min: float = _f(1e-6, doc="final learning rate of the per-step cosine", lo=0.0)
    momentum: float = _f(0.9, doc="SGD momentum", lo=0.0, hi=1.0)
    nesterov: bool = _f(True, doc="Nesterov momentum")
    weight_decay: float = _f(5e-4, doc="L2 weight decay", lo=0.0)
    workers: int = _f(0, doc="DataLoader workers for per-sample augmentation", lo=0)
    device: str = _f("auto", doc="auto | cpu | cuda | cuda:N")
    amp: str = _f(
        "auto", doc="bf16 autocast: auto (on for CUDA) | on | off", choices=("auto", "on", "off")
    )
    channels_last: bool = _f(True, doc="channels_last memory format")
    compile: bool = _f(False, doc="torch.compile the model for training (CUDA: faster steps)")
    step: str = _f(
        "auto",
        doc="the training step: captured (forward, loss and backward replayed as one CUDA graph "
        "per batch shape; the same numbers, without Python's launch cost) | eager | auto "
        "(captured on one CUDA device without compile, else eager)",
        choices=("auto", "eager", "captured"),
    )
    threads: int = _f(0, doc="torch CPU threads, 0 = torch default", lo=0)
    batch_workers: int = _f(
        -1,
        doc="batch path: spawned processes that make the augmented batches on the device, so "
        "that on a GPU the augmentation's host work runs beside the model's; -1 = auto (2 on "
        "CUDA, 0 on the CPU), 0 = in the training process",
        lo=-1,
    )
    checkpoint_every_steps: int = _f(0, doc="also checkpoint every N steps, 0 = off", lo=0)
    checkpoint_minutes: float = _f(10.0, doc="also checkpoint every N minutes, 0 = off", lo=0.0)
    dist_backend: str = _f(
        "auto",
        doc="torchrun process group: auto (nccl on CUDA, gloo on the CPU) | nccl | gloo",
        choices=("auto", "nccl", "gloo"),
    )
    dist_timeout_minutes: float = _f(
        30.0, doc="torchrun: how long a collective waits for a silent rank", lo=0.1
    )


@dataclass
class EvaluateConfig:
    metrics: list[str] = _f(ALL_METRICS, doc="metric plugins to run after training")
    batch_size: int = _f(500, doc="evaluation batch size", lo=1)
    forward: str = _f(
        "auto",
        doc="inference and PGD: captured (the model's forward, or a PGD run's steps, replayed as "
        "one CUDA graph per batch shape; the same results, without Python's launch cost) | "
        "eager | auto (captured on CUDA, else eager)",
        choices=("auto", "eager", "captured"),
    )
    options: dict[str, Any] = _f({}, doc="per-metric options, e.g. {pgd = {steps = 10}}")


@dataclass
class LogConfig:
    tracker: str = _f(
        "none",
        doc="experiment tracker: none | tensorboard | mlflow | wandb (robench[trackers])",
        choices=("none", "tensorboard", "mlflow", "wandb"),
    )
    project: str = _f("robench", doc="the W&B project or MLflow experiment")
    every_steps: int = _f(20, doc="log the step loss and learning rate every N steps", lo=1)


@dataclass
class SlurmConfig:
    partition: str = _f("", doc="SLURM partition (sbatch --partition); empty: the default")
    account: str = _f("", doc="account the jobs are charged to (--account)")
    qos: str = _f("", doc="quality of service (--qos)")
    nodes: int = _f(1, doc="nodes per run", lo=1)
    gpus_per_node: int = _f(
        1, doc="GPUs per node, one training process each (DDP); 0 = a CPU job", lo=0
    )
    cpus_per_task: int = _f(8, doc="CPU cores per training process (--cpus-per-task)", lo=1)
    mem_gb: float = _f(0.0, doc="memory per node in GB (--mem), 0 = the partition's", lo=0.0)
    time_minutes: int = _f(
        240, doc="time limit per job; a job reaching it checkpoints and requeues itself", lo=1
    )
    signal_seconds: int = _f(
        120, doc="how long before the time limit SLURM signals the job to checkpoint", lo=5
    )
    max_timeouts: int = _f(
        20,
        doc="how often a run may hit the time limit and requeue (preemptions do not count)",
        lo=0,
    )
    constraint: str = _f("", doc="node features (--constraint), e.g. a100")
    array_parallelism: int = _f(
        0, doc="runs of one submission running at once (the job array's %N), 0 = no limit", lo=0
    )
    setup: list[str] = _f(
        [], doc='shell lines each job runs first, e.g. ["source .venv/bin/activate"]'
    )
    sbatch: dict[str, Any] = _f(
        {}, doc='more sbatch options, e.g. {exclude = "node12", mail-type = "END"}'
    )


@dataclass
class SweepConfig:
    slurm: SlurmConfig = field(
        default_factory=SlurmConfig, metadata={"doc": "robench sweep --executor slurm"}
    )


@dataclass
class Config:
    name: str = _f("run", doc="a short name for the experiment (part of the run id)")
    seed: int = _f(0, doc="the one seed every random draw derives from", lo=0)
    results_dir: str = _f("results", doc="where runs/ and the leaderboard go")
    data: DataConfig = field(default_factory=DataConfig, metadata={"doc": "data set"})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"doc": "model"})
    augment: AugmentConfig = field(default_factory=AugmentConfig, metadata={"doc": "augmentation"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"doc": "training"})
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig, metadata={"doc": "evaluation"})
    log: LogConfig = field(default_factory=LogConfig, metadata={"doc": "experiment tracking"})
    sweep: SweepConfig = field(
        default_factory=SweepConfig, metadata={"doc": "where robench sweep runs its jobs"}
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _is_section(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a table"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


def _coerce(key: str, value: Any, tp: Any, meta: dict[str, Any]) -> Any:
    """Check ``value`` against the declared type and range of ``key``; return it normalised."""
    origin = typing.get_origin(tp)
    wrong = ConfigError(f"config key {key!r} must be {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise wrong
        (item_tp,) = typing.get_args(tp)
        return [_coerce(f"{key}[{i}]", v, item_tp, {}) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise wrong
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise wrong
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"config key {key!r} must be a finite number, got {value!r}")
    elif tp is str:
        if not isinstance(value, str):
            raise wrong
        if any(ord(c) < 32 or c == "\x7f" for c in value):
            raise ConfigError(
                f"config key {key!r} holds a control character (newline, tab, NUL...): "
                f"{value!r}; remove it"
            )
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices") or ()
    gt = meta.get("gt")
    if gt is not None and value <= gt:
        raise ConfigError(f"config key {key!r} must be > {gt}, got {value!r}")
    if choices and value not in choices:
        allowed = " | ".join(map(str, choices))
        raise ConfigError(f"config key {key!r} must be one of {allowed}, got {value!r}")
    if lo is not None and value < lo:
        raise ConfigError(f"config key {key!r} must be >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"config key {key!r} must be <= {hi}, got {value!r}")
    return value


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(
                f"unknown config key {dotted!r}{hint}; allowed here: {', '.join(fields)}"
            )
        tp = hints[key]
        if _is_section(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {dotted!r} must be a [{dotted}] table")
            kwargs[key] = _build(tp, value, f"{dotted}.")
        else:
            kwargs[key] = _coerce(dotted, value, tp, dict(fields[key].metadata))
    return cls(**kwargs)


#: the longest config name: it is part of the run folder's name, which file systems limit
MAX_NAME = 64


def config_from_dict(raw: dict[str, Any]) -> Config:
    cfg = _build(Config, raw, "")
    _check_relations(cfg)
    return cfg


def _check_relations(cfg: Config) -> None:
    """What no single key's range can say."""
    if not 0 < len(cfg.name) <= MAX_NAME:
        raise ConfigError(
            f"config key 'name' must be 1 to {MAX_NAME} characters (it names the run folder), "
            f"got {len(cfg.name)}"
        )
    if cfg.train.lr_min > cfg.train.lr:
        raise ConfigError(
            f"train.lr_min ({cfg.train.lr_min}) is above train.lr ({cfg.train.lr}): the cosine "
            "schedule decays from lr to lr_min; lower lr_min"
        )
    if cfg.train.step == "captured" and cfg.train.compile:
        raise ConfigError(
            "train.step = 'captured' does not work with train.compile = true (compiling manages "
            "its own launches): set train.step = 'auto' or 'eager', or train.compile = false"
        )


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file {str(path)!r} not found; pass a TOML file, e.g. baselines/quick.toml"
        )
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.epochs=3`` -> (["train", "epochs"], 3). Values are TOML; bare words are strings."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. train.epochs=3")
    key, _, value_text = text.partition("=")
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {value_text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text.strip()
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
        node[path[-1]] = value
    return raw


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a TOML config (or start from defaults), apply ``key=value`` overrides, validate."""
    raw = read_toml(path) if path is not None else {}
    return config_from_dict(apply_overrides(raw, list(overrides)))


def to_toml(cfg: Config) -> str:
    """The resolved config as TOML (written next to every run)."""
    return _dump_table(cfg.to_dict(), [])


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal (strings escaped), for files and ``--set`` overrides."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):  # JSON's string escapes are TOML's, but for DEL
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)


def _dump_table(table: dict[str, Any], path: list[str]) -> str:
    """Top-level keys first, then one ``[section]`` per config section; option tables inline."""
    sections = [k for k in table if k in SECTIONS]
    lines = ([f"[{'.'.join(path)}]"] if path else []) + [
        f"{k} = {toml_value(v)}" for k, v in table.items() if k not in sections
    ]
    out = "\n".join(lines) + "\n"
    for k in sections:
        out += "\n" + _dump_table(table[k], [*path, k])
    return out


def _section_names(cls: type) -> set[str]:
    """The names of the sections of ``cls`` and of their sections (``sweep``, ``slurm``)."""
    hints = typing.get_type_hints(cls)
    names = set()
    for f in dataclasses.fields(cls):
        if _is_section(hints[f.name]):
            names |= {f.name, *_section_names(hints[f.name])}
    return names


SECTIONS = frozenset(_section_names(Config))
