"""One small generic registry, used by every plugin kind (augmentations, metrics, ...).

Models are the exception: they live in timm's own registry (``timm.create_model``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from robench.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered plugin: its factory plus where it came from and what it is."""

    name: str
    factory: T
    description: str
    origin: str


class Registry(Generic[T]):
    """Maps names to factories; unknown names get a "did you mean" error."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self, name: str, *, description: str = "", origin: str = "built-in"
    ) -> Callable[[T], T]:
        """Decorator: ``@AUGMENTATIONS.register("ipmix", description="...")``."""

        def add(factory: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = description or (getattr(factory, "__doc__", None) or "").strip().split("\n")[0]
            self._entries[name] = Entry(name, factory, doc, origin)
            return factory

        return add

    def get(self, name: str) -> T:
        """The factory registered under ``name``; a clear error naming the choices otherwise."""
        try:
            return self._entries[name].factory
        except KeyError:
            raise ConfigError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; choose one of: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
