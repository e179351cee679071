"""One small generic registry, used by every plugin kind (augmentations, metrics, data sets, ...).

Models live in timm's own registry (``timm.create_model``); :data:`robench.plugins.MODELS` only
records which of them robench lists and where each came from.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from robench.errors import ConfigError

T = TypeVar("T")

BUILT_IN = "built-in"


def load_name(namespace: dict[str, Any], api: dict[str, str], name: str) -> Any:
    """A package's public ``name``, imported from the module ``api[name]`` on first use and kept
    in the package's ``namespace`` (its ``globals()``): the module ``__getattr__`` of packages
    that load their API lazily (``robench``, ``robench.reporting``)."""
    value = getattr(importlib.import_module(api[name]), name)
    namespace[name] = value
    return value


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered plugin: its factory plus where it came from and what it is."""

    name: str
    factory: T
    description: str
    origin: str  # "built-in", or the distribution and version that provides it


class Registry(Generic[T]):
    """Maps names to factories; unknown names get a "did you mean" error.

    ``failed`` maps names that a third-party plugin meant to provide but could not (broken or
    conflicting) to the reason, so that using such a name says why instead of "unknown".
    ``builtins`` names the modules whose import registers the built-in entries: they are imported
    at the first look-up, so that importing the registry (or a module beside it, such as the
    metrics' formulas) does not import every plugin's dependencies.
    """

    #: called once, before the first look-up in any registry: robench/__init__.py sets it to
    #: the discovery of third-party plugins, so that they are known however robench was imported
    before_first_lookup: ClassVar[Callable[[], None] | None] = None

    def __init__(self, kind: str, *, builtins: Sequence[str] = ()) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self.failed: dict[str, str] = {}
        self._builtins = tuple(builtins)

    def register(
        self, name: str, *, description: str = "", origin: str = BUILT_IN
    ) -> Callable[[T], T]:
        """Decorator: ``@AUGMENTATIONS.register("ipmix", description="...")``."""

        def add(factory: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = description or first_line(getattr(factory, "__doc__", None))
            self._entries[name] = Entry(name, factory, doc, origin)
            return factory

        return add

    def _ready(self) -> None:
        modules, self._builtins = self._builtins, ()
        for module in modules:
            importlib.import_module(module)
        hook, Registry.before_first_lookup = Registry.before_first_lookup, None
        if hook is not None:
            hook()

    def unregister(self, name: str) -> None:
        """Forget ``name`` (plugin discovery re-runs from scratch this way)."""
        del self._entries[name]

    def get(self, name: str) -> T:
        """The factory registered under ``name``; a clear error naming the choices otherwise."""
        return self.entry(name).factory

    def entry(self, name: str) -> Entry[T]:
        """The whole entry (factory, description, origin) under ``name``."""
        self._ready()
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        if name in self.failed:
            return f"{self.kind} {name!r} is not available: {self.failed[name]}"
        close = difflib.get_close_matches(name, list(self._entries), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; choose one of: {', '.join(self.names())}"

    def names(self) -> list[str]:
        self._ready()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        self._ready()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def first_line(doc: str | None) -> str:
    """The first line of a docstring: the one-line description ``robench list`` shows."""
    return (doc or "").strip().split("\n")[0].strip()
