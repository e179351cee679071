"""Checkpoints written by other code, read with ``weights_only`` (safetensors holds tensors only).

The formats found in practice:

* a plain state dict, ``torch.save(model.state_dict(), path)``;
* ``{"state_dict": ...}`` with ``epoch``, ``best_acc``, ``optimizer``: the official AugMix, PixMix
  and IPMix ``cifar.py`` (their net is wrapped in ``DataParallel``, so every key starts with
  ``module.``), and timm's ``train.py`` (its ``args`` namespace is allowed, as timm's own loader
  does; its ``state_dict_ema`` is not used, as in timm's ``validate.py`` without ``--use-ema``);
* ``{"model": ...}`` (robench's run checkpoints) and ``{"net": ...}``;
* a ``.safetensors`` file.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from timm.models import clean_state_dict
from torch import nn

from robench.errors import CheckpointError, first_line

#: where a training script's checkpoint dict keeps the state dict, in the order tried
STATE_KEYS = ("state_dict", "model", "net")
_SHOWN_KEYS = 4  # keys named in a mismatch message


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in checkpoint ``path``, without ``module.`` / ``_orig_mod.`` prefixes."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} not found")
    try:
        if path.suffix == ".safetensors":
            obj: Any = safetensors.torch.load_file(path)
        else:
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch: UnpicklingError, RuntimeError, EOFError; safetensors: ...
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be loaded safely ({first_line(err)}); it is corrupt "
            "or holds pickled objects (a whole model saved with torch.save(model)?): save "
            "model.state_dict() instead"
        ) from None
    state = _find_state(obj)
    if state is None:
        found = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else type(obj)
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds no state dict (found: {found or 'nothing'}); "
            f"expected tensors by name, or such a dict under {', '.join(map(repr, STATE_KEYS))}"
        )
    return clean_state_dict(dict(state))


def _is_state(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def _find_state(obj: Any) -> Mapping[str, torch.Tensor] | None:
    if _is_state(obj):
        return obj
    if isinstance(obj, Mapping):
        # AugMix's checkpoint also has "model": the architecture's name, so look for a dict
        return next((obj[k] for k in STATE_KEYS if _is_state(obj.get(k))), None)
    return None


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``model``, every key accounted for; a mismatch is one line naming a
    few of the missing and unexpected keys (or the first tensor of the wrong shape)."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes that differ fail even with strict=False
        lines = [line.strip() for line in str(err).splitlines()]
        first = next((line for line in lines if line.startswith("size mismatch")), lines[0])
        raise CheckpointError(
            f"{what} does not fit the model ({first}); check the architecture and num_classes "
            "(--model, --num-classes)"
        ) from None
    problems = [
        f"{len(keys)} {kind} ({_some(keys)})"
        for kind, keys in (("missing", result.missing_keys), ("unexpected", result.unexpected_keys))
        if keys
    ]
    if problems:
        raise CheckpointError(
            f"{what} does not fit the model: keys {' and '.join(problems)}; check that the "
            "architecture is the one it was trained with (--model)"
        )


def _some(keys: list[str]) -> str:
    more = f", ... {len(keys) - _SHOWN_KEYS} more" if len(keys) > _SHOWN_KEYS else ""
    return ", ".join(keys[:_SHOWN_KEYS]) + more


def hash_state(model: nn.Module) -> str:
    """sha256 (16 hex digits) of a model's state dict: names, dtypes, shapes and bytes. The same
    weights give the same hash whatever file (or format) they were read from."""
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        h.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:16]
