"""The package's layering, read from the code: each stage imports only the stages it builds on,
the shared infrastructure below them imports no stage, and no public name hides a subpackage.

    config (TOML) -> data -> augment -> training  -> checkpoint
                     models ----------^          evaluation -> metrics.json -> reporting

Training and evaluation are siblings: evaluating a model needs no trainer (any checkpoint can
be evaluated), and training never computes a metric itself.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import robench

PACKAGE = Path(robench.__file__).parent
#: what each stage may import besides itself and the infrastructure
STAGES = {
    "data": set(),
    "models": set(),
    "augment": {"data"},
    "training": {"data", "models", "augment"},
    "evaluation": {"data", "models"},
    "reporting": {"data", "models", "augment", "evaluation"},
}
#: shared infrastructure below every stage: imports no stage
INFRASTRUCTURE = {
    "config", "console", "devices", "distributed", "errors", "graphs", "io", "registry", "runs",
    "trackers",
}  # fmt: skip


def robench_imports(path: Path) -> set[str]:
    """The first component after ``robench.`` of every import in ``path`` (lazy ones too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "robench" and len(parts) > 1:
                found.add(parts[1])
    return found


def layering_violations(package: Path) -> list[str]:
    out = []
    for path in sorted(package.rglob("*.py")):
        owner = path.relative_to(package).parts[0].removesuffix(".py")
        if owner in STAGES:
            allowed = {*INFRASTRUCTURE, owner, *STAGES[owner]}
        elif owner in INFRASTRUCTURE:
            allowed = set(INFRASTRUCTURE)
        else:
            continue  # the front doors and tools above the stages: cli, pipeline, bench, ...
        for name in sorted(robench_imports(path) - allowed):
            if name in STAGES or name not in INFRASTRUCTURE:
                out.append(f"{path.relative_to(package.parent)} imports robench.{name}")
    return out


def test_stages_import_only_what_they_build_on() -> None:
    assert layering_violations(PACKAGE) == []


def test_the_check_catches_the_old_evaluation_to_training_import(tmp_path: Path) -> None:
    """Put back evaluation -> training (how evaluation once reached the torchrun helpers)."""
    copy = tmp_path / "robench"
    for path in PACKAGE.rglob("*.py"):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    base = copy / "evaluation" / "base.py"
    base.write_text(
        base.read_text().replace(
            "from robench import distributed", "from robench.training import x"
        )
    )
    assert layering_violations(copy) == ["robench/evaluation/base.py imports robench.training"]


def test_no_public_name_hides_a_subpackage() -> None:
    """``robench.reporting.assert_claims`` must reach the subpackage, whatever robench exports."""
    for module in pkgutil.iter_modules([str(PACKAGE)]):
        exported = robench.__dict__.get(module.name)
        if exported is not None:
            assert exported is importlib.import_module(f"robench.{module.name}"), module.name
    assert robench.reporting.assert_claims is not None


@pytest.mark.parametrize("hidden", ["fcntl"])
def test_robench_imports_without_fcntl(tmp_path: Path, hidden: str) -> None:
    """Where ``fcntl`` is missing (Windows), robench imports and its locks run unguarded."""
    code = f"""
import sys
sys.modules[{hidden!r}] = None  # import fcntl now raises ImportError
from pathlib import Path
import robench
from robench.io import cache_lock
from robench.runs import run_lock
root = Path({str(tmp_path)!r})
with cache_lock(root / "entry"), run_lock(root / "run"):
    (root / "run" / "file").write_text("x")
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_command_line_starts_without_torch() -> None:
    """``robench --help`` answers before torch, timm or pandas load (they take seconds), and
    the public API still loads on first use."""
    code = """
import sys
from robench.cli import build_parser
build_parser().format_help()
heavy = sorted(m for m in ("torch", "timm", "pandas") if m in sys.modules)
import robench
assert callable(robench.train) and "torch" in sys.modules
print(heavy)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_report_reads_metric_metadata_without_the_generators() -> None:
    """The report, the claims and the formulas read every metric's metadata (the built-in
    metrics register at the first look-up) without importing the corruption, perturbation and
    OOD set makers, which only a metric's run needs."""
    code = """
import sys
import robench.reporting
from robench.evaluation.base import METRICS, declared_values
from robench.evaluation.functional import mce
assert "corruption_error_*" in declared_values() and "pgd" in METRICS
makers = ("corrupted_sets", "corruptions", "perturbations", "ood")
print(sorted(m for m in sys.modules if m in {f"robench.data.{n}" for n in makers} | {"cv2"}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
