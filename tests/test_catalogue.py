"""robench/catalogue.json is what the registries hold, and robench list reads it without torch."""

from __future__ import annotations

import subprocess
import sys

from robench import catalogue
from robench.registry import BUILT_IN


def test_the_catalogue_is_what_the_registries_hold() -> None:
    registered = [row for row in catalogue.collect() if row[2] == BUILT_IN]
    assert catalogue.built_in() == registered, "out of date: run python -m robench.catalogue"


def test_robench_list_imports_no_torch_without_plugins(repo_root) -> None:
    code = (
        "import sys; from robench import catalogue; from robench.cli import main\n"
        "catalogue.third_party_installed = lambda: False\n"
        "main(['list']); print('torch' in sys.modules, 'timm' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[-1] == "False False"
    assert any(line.split()[:2] == ["method", "ipmix"] for line in out)
    assert any(line.split()[:2] == ["model", "wrn_40_2"] for line in out)
