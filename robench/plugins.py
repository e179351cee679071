"""Third-party plugins: what other installed packages add to robench through entry points.

One entry-point group per plugin kind, each with one convention (docs/extending.md has examples):

* ``robench.augmentations``: ``name = "pkg.module:Class"``, an
  :class:`~robench.augment.base.Augmentation` subclass; it becomes method ``name``.
* ``robench.metrics``: ``name = "pkg.module:function"``, a metric
  ``function(model, data, ctx, **options) -> MetricResult``; it becomes metric ``name``.
* ``robench.datasets``: ``name = "pkg.module:function"``, a loader
  ``function(arg, split, *, root) -> (images, labels, classes)``; specs ``name`` and
  ``name:<arg>`` reach it.
* ``robench.models``: ``name = "pkg.module"``, a module (no ``:attr``) whose import registers
  models in timm's own registry with ``timm.models.register_model``; ``name`` only labels it.

The plugin objects never register themselves: robench registers them under the entry point's
name, with the providing distribution and version as their origin. :func:`discover` runs once, at
``import robench``, and never raises. A plugin that cannot be imported, has the wrong type, or
takes a name that is built in or that two packages provide is left out and recorded in
:data:`PROBLEMS`; using its name is a one-line ``ConfigError`` saying why, ``robench list``
shows it, and the built-ins work as before.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from itertools import groupby
from pathlib import Path
from typing import Any

import timm
from timm.models import model_entrypoint, register_model

from robench.augment.base import AUGMENTATIONS, Augmentation
from robench.catalogue import PLUGIN_GROUPS
from robench.data.datasets import BUILTIN_PREFIXES, DATASETS
from robench.evaluation.base import METRICS
from robench.models import CIFAR_MODELS
from robench.registry import BUILT_IN, Registry

#: the models ``robench list`` shows: robench's CIFAR architectures and those of model plugins
#: (all of them live in timm's registry; this records their origin and description)
MODELS: Registry[Callable[..., Any]] = Registry("model")
for _name in CIFAR_MODELS:
    MODELS.register(_name)(model_entrypoint(_name))

REGISTRIES: dict[str, Registry[Any]] = {
    "method": AUGMENTATIONS,
    "metric": METRICS,
    "dataset": DATASETS,
    "model": MODELS,
}


@dataclass(frozen=True)
class Problem:
    """A plugin robench left out, and why."""

    kind: str  # method | metric | dataset | model
    name: str  # the entry point's name, or the model's
    origin: str  # the distribution and version that declared it
    message: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r} from {self.origin}: {self.message}"


#: every plugin left out by the last :func:`discover`
PROBLEMS: list[Problem] = []
_discovered = False


def discover(*, reload: bool = False) -> list[Problem]:
    """Register every installed plugin, once; ``reload`` forgets them and reads the metadata again.

    Returns the problems (also in :data:`PROBLEMS`). Never raises: a broken plugin is a problem.
    """
    global _discovered
    if _discovered and not reload:
        return PROBLEMS
    _discovered = True
    _forget()
    try:
        found = entry_points()
    except Exception as e:  # unreadable metadata of some installed package
        PROBLEMS.append(Problem("plugins", "*", "installed packages", f"unreadable: {_line(e)}"))
        return PROBLEMS
    for group, kind in PLUGIN_GROUPS.items():
        # sorted, so that which plugin wins or fails never depends on the install order
        eps = sorted(found.select(group=group), key=lambda ep: (ep.name, origin(ep)))
        if kind == "model":
            for ep in eps:
                _add_models(ep)
        else:
            for _, same_name in groupby(eps, key=lambda ep: ep.name):
                _add_object(kind, list(same_name))
    return PROBLEMS


def origin(ep: EntryPoint) -> str:
    """``"<distribution> <version>"`` of the package that declares ``ep``."""
    return f"{ep.dist.name} {ep.dist.version}" if ep.dist else "an unknown package"


def _forget() -> None:
    for registry in REGISTRIES.values():
        for entry in registry.entries():
            if entry.origin != BUILT_IN:
                registry.unregister(entry.name)
        registry.failed.clear()
    PROBLEMS.clear()


def _line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _fail(kind: str, ep: EntryPoint, message: str, *, name: str | None = None) -> None:
    """Record a problem; the name, when given, becomes unusable with ``message`` as the reason."""
    where = origin(ep)
    PROBLEMS.append(Problem(kind, name or ep.name, where, message))
    if name is not None:
        package = ep.dist.name if ep.dist else "the package"
        REGISTRIES[kind].failed[name] = (
            f"{where} provides it, but {message}; fix or uninstall {package}"
        )


def _add_object(kind: str, eps: list[EntryPoint]) -> None:
    """Register one augmentation, metric or data-set plugin (all of ``eps`` share its name)."""
    name, registry = eps[0].name, REGISTRIES[kind]
    if name in registry or (kind == "dataset" and name in BUILTIN_PREFIXES):
        for ep in eps:  # the built-in keeps its name
            _fail(kind, ep, f"{name!r} is built in, so the plugin is ignored; rename it")
        return
    if len(eps) > 1:
        clash = f"provided by {' and '.join(origin(ep) for ep in eps)}; uninstall all but one"
        PROBLEMS.extend(Problem(kind, name, origin(ep), clash) for ep in eps)
        registry.failed[name] = clash
        return
    (ep,) = eps
    before = {k: set(r.names()) for k, r in REGISTRIES.items()}
    try:
        obj = ep.load()
    except Exception as e:  # anything at all can go wrong in a third-party import
        _fail(kind, ep, f"{ep.value} cannot be loaded ({_line(e)})", name=name)
        return
    for other_kind, other in REGISTRIES.items():  # undo a plugin that registered itself
        for extra in sorted(set(other.names()) - before[other_kind]):
            other.unregister(extra)
            _fail(kind, ep, f"{ep.value} registers {other_kind} {extra!r} itself", name=name)
    if name in registry.failed:
        return
    wrong = _wrong_type(kind, obj)
    if wrong:
        _fail(kind, ep, f"{ep.value} is {wrong}", name=name)
        return
    registry.register(name, origin=origin(ep))(obj)


def _wrong_type(kind: str, obj: Any) -> str | None:
    """What is wrong with ``obj`` as a ``kind`` plugin, or None when it fits the protocol."""
    if kind == "method":
        if isinstance(obj, type) and issubclass(obj, Augmentation):
            return None
        return f"{_what(obj)}, not a subclass of robench.augment.base.Augmentation"
    call = (None, None, None) if kind == "metric" else (None, "test")
    keywords = {"root": Path()} if kind == "dataset" else {}
    form = "(model, data, ctx, **options)" if kind == "metric" else "(arg, split, *, root)"
    try:
        inspect.signature(obj).bind(*call, **keywords)
    except (TypeError, ValueError):
        return f"{_what(obj)}, not a callable taking {form}"
    return None


def _what(obj: object) -> str:
    kind = "class" if isinstance(obj, type) else type(obj).__name__
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)
    return f"a {kind} ({name})"


def _add_models(ep: EntryPoint) -> None:
    """Import a model plugin module and record the timm models it registered.

    A model that replaces one timm (or robench, or an earlier plugin) already had is put back as
    it was, and the replacement reported: names keep meaning what they meant.
    """
    if ep.attr:
        _fail("model", ep, f"{ep.value} must name a module (pkg.models), not an object")
        return
    before = _timm_models()
    try:
        ep.load()
    except Exception as e:  # anything at all can go wrong in a third-party import
        _fail("model", ep, f"{ep.value} cannot be imported ({_line(e)})")
        return
    after = _timm_models()
    # what the import changed, plus what the module defines (an earlier import may have run it)
    mine = sorted(
        name
        for name, fn in after.items()
        if before.get(name) is not fn or _defined_in(fn, ep.module)
    )
    if not mine:
        _fail("model", ep, f"{ep.value} registers no model (use timm.models.register_model)")
    for name in mine:
        previous = before.get(name)
        if previous is not None and previous is not after[name]:
            owner = MODELS.entry(name).origin if name in MODELS else "timm"
            with warnings.catch_warnings():  # timm warns about the overwrite we undo
                warnings.simplefilter("ignore")
                register_model(previous)
            _fail("model", ep, f"model {name!r} is already provided by {owner}; kept that one")
        elif name not in MODELS:
            MODELS.register(name, origin=origin(ep))(after[name])


def _timm_models() -> dict[str, Callable[..., Any]]:
    return {name: model_entrypoint(name) for name in timm.list_models()}


def _defined_in(fn: Callable[..., Any], module: str) -> bool:
    where = getattr(fn, "__module__", "") or ""
    return where == module or where.startswith(module + ".")
