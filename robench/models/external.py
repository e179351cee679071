"""Models trained elsewhere, taking pixels in [0, 1] with their input normalisation made explicit.

:func:`load_model` builds a timm architecture (robench's CIFAR ones included) and loads a
checkpoint into it (any format of :mod:`robench.models.checkpoints`) or timm's pretrained
weights, or loads a model of RobustBench's zoo. The mean/std the weights were trained with come
from, in this order: the caller (``mean``/``std``; ``--mean/--std``); the checkpoint itself (a
robench checkpoint records them); timm's pretrained cfg, for timm's own weights; robench's CIFAR
architectures, whose cfg records the official AugMix/PixMix/IPMix scripts'
``Normalize([0.5] * 3, [0.5] * 3)``. A checkpoint of any other architecture has none of these
and is refused rather than normalised with a guess (timm's default is ImageNet's statistics);
``normalize=False`` (``--no-normalize``) evaluates it as it is.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from timm.models import get_pretrained_cfg_value
from torch import nn

from robench.errors import CheckpointError, ConfigError, first_line
from robench.io import hash_file
from robench.models import CIFAR_MODELS, architecture, create_net
from robench.models.checkpoints import load_weights, read_state_dict
from robench.models.wrapper import Normalized, is_wrapper_state

ROBUSTBENCH = "robustbench:"
#: RobustBench's name for the data set of a test set with this many classes
ROBUSTBENCH_DATASETS = {10: "cifar10", 100: "cifar100", 1000: "imagenet"}
#: no normalisation: the network takes pixels in [0, 1]
AS_IS = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

Stats = tuple[tuple[float, ...], tuple[float, ...]]


def load_model(
    name: str,
    *,
    checkpoint: str | Path | None = None,
    pretrained: bool | str | Path = False,
    num_classes: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    normalize: bool = True,
    model_dir: str | Path = "models",
    **options: Any,
) -> Normalized:
    """A model trained elsewhere, wrapped to take pixels in [0, 1].

    ``name`` is a timm model name with its weights from ``checkpoint`` (a file) or
    ``pretrained`` (``True``: timm's weights, from its cache or the hub; a path: a local copy of
    them), or ``robustbench:[<dataset>/<threat model>/]<name>``, a model of RobustBench's zoo
    read from ``model_dir`` in RobustBench's layout (the short form takes the data set from
    ``num_classes`` and the corruptions leaderboard). ``num_classes`` defaults to the size of
    the checkpoint's classifier, else the architecture's default. ``options`` go to the timm
    constructor. The model's ``source`` records where its weights and normalisation came from.
    """
    if name.startswith(ROBUSTBENCH):
        given = checkpoint or pretrained or mean is not None or std is not None or options
        if given or not normalize:
            raise ConfigError(
                f"{name}: RobustBench's models come with their weights and normalise inside; "
                "drop the checkpoint, pretrained, mean/std, normalize and model options"
            )
        return _from_robustbench(name, num_classes, Path(model_dir))
    if bool(checkpoint) == bool(pretrained):
        raise ConfigError(
            f"model {name!r} needs its weights: a checkpoint file (--checkpoint FILE) or timm's "
            "pretrained weights (--pretrained), one of the two"
        )
    recorded: Stats | None = None
    if checkpoint:
        state = read_state_dict(checkpoint)
        if is_wrapper_state(state):  # a robench checkpoint: the normalisation comes with it
            stats = state.pop("mean"), state.pop("std")
            recorded = (tuple(stats[0].flatten().tolist()), tuple(stats[1].flatten().tolist()))
            state = {k.removeprefix("model."): v for k, v in state.items()}
        net = create_net(name, num_classes or _classifier_size(name, state), **options)
        load_weights(net, state, f"checkpoint {str(checkpoint)!r}")
        source = {"checkpoint": str(Path(checkpoint).resolve()), "sha256": hash_file(checkpoint)}
        label = Path(checkpoint).name.split(".")[0]
    else:
        overlay: dict[str, Any] = {}
        if pretrained is not True:
            if not Path(pretrained).is_file():
                raise CheckpointError(f"pretrained weights file {str(pretrained)!r} not found")
            overlay = {"pretrained_cfg_overlay": {"file": str(pretrained)}}
        net = create_net(name, num_classes, pretrained=True, **overlay, **options)
        label = _tag(net)
        source = {"pretrained": label}
        if overlay:
            source |= {"file": str(Path(pretrained).resolve()), "sha256": hash_file(pretrained)}
    cfg_source = None
    if pretrained:
        cfg_source = f"timm's pretrained cfg of {_tag(net)}"
    elif architecture(net) in CIFAR_MODELS:
        cfg_source = f"the official scripts' Normalize for {architecture(net)} (its timm cfg)"
    (mean, std), how = _normalization(net, mean, std, normalize, recorded, cfg_source)
    model = Normalized(net, mean, std)
    model.source = {"name": name, **source, "normalization": how, "label": label}
    return model


def _tag(net: nn.Module) -> str:
    """``architecture.tag`` of a timm network's pretrained weights (the architecture alone for
    a cfg without a tag)."""
    tag = (getattr(net, "pretrained_cfg", None) or {}).get("tag")
    return f"{architecture(net)}.{tag}" if tag else architecture(net)


def _classifier_size(name: str, state: dict[str, Any]) -> int | None:
    """The number of classes of the checkpoint's head, found under the classifier name that the
    architecture's timm cfg gives (``fc``, ``head``, ...); None when it has no such tensor."""
    try:
        classifier = get_pretrained_cfg_value(name, "classifier")
    except RuntimeError:  # not a timm name: create_net says so
        return None
    weight = state.get(f"{classifier}.weight") if isinstance(classifier, str) else None
    return int(weight.shape[0]) if weight is not None and weight.ndim >= 1 else None


def _normalization(
    net: nn.Module,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    normalize: bool,
    recorded: Stats | None,
    cfg_source: str | None,
) -> tuple[Stats, str]:
    """(mean, std) and where they came from (see the module docstring for the order)."""
    if (mean is None) != (std is None):
        raise ConfigError("give the mean and the std together (--mean and --std)")
    if not normalize:
        if mean is not None:
            raise ConfigError("normalize=False (--no-normalize) contradicts the mean/std given")
        return AS_IS, "none: the network takes pixels in [0, 1]"
    if mean is not None and std is not None:
        return (_channels(mean, "mean"), _channels(std, "std")), "given"
    if recorded is not None:
        return recorded, "recorded in the checkpoint"
    cfg = getattr(net, "pretrained_cfg", None) or {}
    if cfg_source and cfg.get("mean") and cfg.get("std"):
        return (tuple(cfg["mean"]), tuple(cfg["std"])), cfg_source
    raise ConfigError(
        f"no input normalisation is known for a {architecture(net)} checkpoint trained "
        "elsewhere: give the mean and std of its training script's Normalize (mean=/std=, or "
        "--mean/--std; "
        "e.g. 0.4914,0.4822,0.4465 and 0.2470,0.2435,0.2616 for CIFAR-10's), or "
        "normalize=False (--no-normalize) if it takes pixels in [0, 1]"
    )


def _channels(values: Sequence[float], what: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if len(out) != 3 or (what == "std" and min(out) <= 0):
        kind = "positive numbers" if what == "std" else "numbers"
        raise ConfigError(f"{what} needs 3 {kind}, one per RGB channel; got {list(values)}")
    return out


def _from_robustbench(spec: str, num_classes: int | None, model_dir: Path) -> Normalized:
    """A model of RobustBench's zoo through ``robustbench.utils.load_model``, which reads
    ``<model_dir>/<dataset>/<threat model>/<name>.pt`` (and downloads it there if missing)."""
    parts = spec.removeprefix(ROBUSTBENCH).split("/")
    if len(parts) == 1 and num_classes in ROBUSTBENCH_DATASETS:
        parts = [ROBUSTBENCH_DATASETS[num_classes], "corruptions", parts[0]]
    if len(parts) != 3 or not all(parts):
        raise ConfigError(
            f"{spec!r}: name a RobustBench model as robustbench:<dataset>/<threat model>/<name>, "
            "e.g. robustbench:cifar10/corruptions/Hendrycks2020AugMix_WRN (robustbench:<name> "
            "alone needs a test set of 10, 100 or 1000 classes)"
        )
    dataset, threat_model, zoo_name = parts
    try:
        from robustbench.utils import load_model as load_zoo_model
    except ImportError as err:
        raise ConfigError(
            f"{spec} needs the robustbench package ({first_line(err)}); docs/python-api.md says "
            "how to install it"
        ) from None
    try:
        with _forced_weights_only():
            net = load_zoo_model(
                zoo_name, model_dir=model_dir, dataset=dataset, threat_model=threat_model
            )
    except Exception as err:  # RobustBench: KeyError for a name not in its zoo, gdown's offline
        raise CheckpointError(
            f"RobustBench cannot load {zoo_name} ({dataset}, {threat_model}): "
            f"{type(err).__name__}: {first_line(err)}; offline, put its checkpoint at "
            f"{model_dir / dataset / threat_model / zoo_name}.pt"
        ) from err
    model = Normalized(net, *AS_IS)  # RobustBench's models take [0, 1] pixels
    model.source = {
        "name": f"{ROBUSTBENCH}{dataset}/{threat_model}/{zoo_name}",
        "model_dir": str(model_dir.resolve()),
        "normalization": "inside the model (RobustBench's convention)",
        "label": zoo_name,
    }
    return model


_FORCE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
_NO_FORCE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


@contextlib.contextmanager
def _forced_weights_only() -> Iterator[None]:
    """Every ``torch.load`` inside runs with ``weights_only=True``, whatever its caller passes
    (RobustBench's loader passes nothing, which meant False before torch 2.6)."""
    saved = {key: os.environ.get(key) for key in (_FORCE, _NO_FORCE)}
    os.environ[_FORCE] = "1"
    os.environ.pop(_NO_FORCE, None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
