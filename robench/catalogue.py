"""What robench has built in (methods, metrics, data-set forms, CIFAR models), one line each, as
``robench list`` prints it: read from ``catalogue.json`` so that listing needs neither torch nor
timm (under a second instead of several). The file is generated from the registries with
``python -m robench.catalogue``; ``tests/test_catalogue.py`` fails when it is out of date.
Third-party plugins are not in it: with any installed, ``robench list`` loads the registries.
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

PATH = Path(__file__).with_name("catalogue.json")
#: entry-point group -> the kind of plugin it declares (the first column of ``robench list``);
#: here rather than in robench.plugins, which imports torch
PLUGIN_GROUPS = {
    "robench.augmentations": "method",
    "robench.metrics": "metric",
    "robench.datasets": "dataset",
    "robench.models": "model",
}

Row = tuple[str, str, str, str]  # kind, name, origin, description


def built_in() -> list[Row]:
    """The built-in rows, from catalogue.json."""
    return [tuple(row) for row in json.loads(PATH.read_text())]  # type: ignore[misc]


def third_party_installed() -> bool:
    return any(entry_points(group=group) for group in PLUGIN_GROUPS)


def collect() -> list[Row]:
    """Every row, read from the registries (imports every plugin kind, torch included)."""
    from robench.data.datasets import BUILTIN_DATASETS
    from robench.plugins import REGISTRIES
    from robench.registry import BUILT_IN

    rows: list[Row] = []
    for kind, registry in REGISTRIES.items():
        if kind == "dataset":
            rows += [(kind, name, BUILT_IN, text) for name, text in BUILTIN_DATASETS.items()]
        rows += [(kind, e.name, e.origin, e.description) for e in registry.entries()]
    return rows


def write() -> None:
    from robench.registry import BUILT_IN

    rows = [json.dumps(list(row), ensure_ascii=False) for row in collect() if row[2] == BUILT_IN]
    PATH.write_text("[\n" + ",\n".join(rows) + "\n]\n")


if __name__ == "__main__":
    write()
