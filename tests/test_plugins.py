"""Third-party plugins through entry points: discovery, origins, failures, and the worked example.

Packages are "installed" the way importlib.metadata sees them: a ``*.dist-info`` folder with an
``entry_points.txt`` on a temporary sys.path entry, then discovery re-runs.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch

from robench.augment import AUGMENTATIONS, create_augmentation
from robench.augment.base import Augmentation
from robench.cli import main
from robench.data import load_dataset
from robench.data.datasets import DATASETS
from robench.errors import ConfigError, DataError
from robench.evaluation import METRICS
from robench.evaluation.base import MetricResult, PerExample, ValueInfo
from robench.models import create_model
from robench.pipeline import evaluate_run, train
from robench.plugins import MODELS, PROBLEMS, discover
from robench.reporting.leaderboard import leaderboard
from robench.reporting.tables import gather_runs
from robench.testing import check_augmentation, check_dataset, check_metric, check_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "robench-noisemix"
EXAMPLE_ENTRY_POINTS = {
    "robench.augmentations": {"noisemix": "robench_noisemix.augment:NoiseMix"},
    "robench.metrics": {"noise_error": "robench_noisemix.metric:noise_error"},
}

Install = Callable[..., None]


@pytest.fixture
def install(tmp_path: Path) -> Iterator[Install]:
    """``install(dist, groups, modules, path=...)``: fake-install a package, then rediscover.

    ``groups`` maps entry-point groups to {name: value}; ``modules`` maps module names to their
    source. Everything is undone afterwards (sys.path, imported modules, plugin registrations).
    """
    site = tmp_path / "site"
    site.mkdir()
    added: list[str] = []
    modules_before = set(sys.modules)

    def add(dist: str, groups: dict[str, dict[str, str]], modules=None, path=None) -> None:
        name, _, version = dist.partition(" ")
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        text = "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
            for group, eps in groups.items()
        )
        (info / "entry_points.txt").write_text(text)
        for module, source in (modules or {}).items():
            (site / f"{module}.py").write_text(source)
        for entry in (str(site), *([str(path)] if path else [])):
            if entry not in sys.path:
                sys.path.insert(0, entry)
                added.append(entry)
        importlib.invalidate_caches()
        discover(reload=True)

    yield add
    for entry in added:
        sys.path.remove(entry)
    for module in set(sys.modules) - modules_before:
        if module.startswith(("robench_broken", "robench_toy", "robench_twin")):
            del sys.modules[module]
    importlib.invalidate_caches()
    discover(reload=True)


def list_output(capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["list"]) == 0
    return capsys.readouterr().out


# --- the worked example ------------------------------------------------------------------------


@pytest.mark.slow
def test_example_package_trains_and_evaluates_by_name(install: Install, tiny_config, capsys):
    install("robench-noisemix 0.1.0", EXAMPLE_ENTRY_POINTS, path=EXAMPLE)
    assert AUGMENTATIONS.entry("noisemix").origin == "robench-noisemix 0.1.0"
    assert METRICS.entry("noise_error").origin == "robench-noisemix 0.1.0"
    out = list_output(capsys)
    row = next(line for line in out.splitlines() if line.split()[:2] == ["method", "noisemix"])
    assert "robench-noisemix 0.1.0" in row and "Beta" in row  # origin and docstring line
    # run_all.sh's check of method names still parses the table
    methods = [line.split()[1] for line in out.splitlines() if line.split()[:1] == ["method"]]
    assert methods == AUGMENTATIONS.names() and "noisemix" in methods

    cfg = tiny_config(
        'augment.method="noisemix"',
        "augment.options={jsd=true}",
        "train.epochs=1",
        'evaluate.metrics=["clean", "noise_error"]',
    )
    run_dir = train(cfg, progress=False)
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["augment"]["method"] == "noisemix" and doc["augment"]["num_views"] == 3
    assert 0 <= doc["metrics"]["noise_error"]["noise_error"] <= 100
    doc = evaluate_run(run_dir, ["noise_error"], options={"noise_error": {"sigma": 0.5}})
    assert doc["metrics"]["noise_error"]["noise_sigma"] == 0.5
    assert "clean" in doc["metrics"]  # earlier numbers are kept
    # its declared headline value is a leaderboard column; its other values are not
    board = leaderboard(gather_runs(cfg.results_dir), cfg.results_dir)
    assert board["noise_error"].iloc[0] == pytest.approx(
        doc["metrics"]["noise_error"]["noise_error"]
    )
    assert "noise_sigma" not in board


def test_example_package_passes_the_protocol_checks(install: Install) -> None:
    install("robench-noisemix 0.1.0", EXAMPLE_ENTRY_POINTS, path=EXAMPLE)
    check_augmentation("noisemix")
    check_augmentation("noisemix", options={"jsd": True, "noise": "uniform"})
    check_metric("noise_error", options={"sigma": 0.2})


# --- broken and conflicting plugins ------------------------------------------------------------

BROKEN_SOURCE = """
from robench.augment.base import AUGMENTATIONS, Augmentation

def not_a_metric():
    '''takes no arguments'''

@AUGMENTATIONS.register("sneaky")
class Sneaky(Augmentation):
    '''registers itself instead of waiting for robench'''
"""


def test_broken_plugins_are_reported_and_builtins_still_work(
    install: Install, tiny_npz: Path, capsys
) -> None:
    install(
        "robench-broken 1.0",
        {
            "robench.augmentations": {
                "crashy": "robench_broken_import:Anything",
                "wrongtype": "robench_broken_objects:not_a_metric",
                "sneaky": "robench_broken_objects:Sneaky",
                "baseline": "robench_broken_objects:Sneaky",
            },
            "robench.metrics": {"nosig": "robench_broken_objects:not_a_metric"},
            "robench.datasets": {"npz": "robench_broken_objects:not_a_metric"},
            "robench.models": {"nets": "robench_broken_import"},
        },
        {
            "robench_broken_import": "raise ImportError('needs libfoo')\n",
            "robench_broken_objects": BROKEN_SOURCE,
        },
    )
    problems = {(p.kind, p.name) for p in PROBLEMS}
    assert problems == {
        ("method", "crashy"),
        ("method", "wrongtype"),
        ("method", "sneaky"),
        ("method", "baseline"),
        ("metric", "nosig"),
        ("dataset", "npz"),
        ("model", "nets"),
    }
    assert all(p.origin == "robench-broken 1.0" for p in PROBLEMS)
    with pytest.raises(ConfigError) as info:
        create_augmentation("crashy", num_classes=10)
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        "augmentation 'crashy' is not available: robench-broken 1.0 provides it, but "
        "robench_broken_import:Anything cannot be loaded (ImportError: needs libfoo); "
        "fix or uninstall robench-broken"
    )
    with pytest.raises(
        ConfigError, match=r"not a subclass of robench\.augment\.base\.Augmentation"
    ):
        AUGMENTATIONS.get("wrongtype")
    with pytest.raises(ConfigError, match=r"registers method 'sneaky' itself"):
        AUGMENTATIONS.get("sneaky")
    with pytest.raises(ConfigError, match=r"not a callable taking \(model, data, ctx"):
        METRICS.get("nosig")
    # the built-ins keep their names and work
    assert AUGMENTATIONS.entry("baseline").origin == "built-in"
    check_augmentation("baseline")
    assert load_dataset(f"npz:{tiny_npz}", "test", progress=False).identity.count == 24
    # robench list: the table as before, plus one warning line per problem
    out = list_output(capsys)
    assert "failed plugins" in out
    failed = [line for line in out.splitlines() if line.startswith("  ! ")]
    assert len(failed) == len(PROBLEMS)
    assert any("crashy" in line and "needs libfoo" in line for line in failed)
    assert [line.split()[1] for line in out.splitlines() if line.split()[:1] == ["method"]] == (
        AUGMENTATIONS.names()
    )


def test_a_name_two_packages_provide_is_refused(install: Install) -> None:
    source = "from robench_noisemix.augment import NoiseMix\n"
    groups = {"robench.augmentations": {"twin": "robench_twin_a:NoiseMix"}}
    install("pkg-a 1.0", groups, {"robench_twin_a": source}, path=EXAMPLE)
    assert AUGMENTATIONS.entry("twin").origin == "pkg-a 1.0"
    install("pkg-b 2.0", {"robench.augmentations": {"twin": "robench_twin_b:NoiseMix"}})
    assert "twin" not in AUGMENTATIONS
    with pytest.raises(ConfigError, match=r"provided by pkg-a 1.0 and pkg-b 2.0; uninstall all"):
        create_augmentation("twin", num_classes=10)
    assert {(p.name, p.origin) for p in PROBLEMS} == {("twin", "pkg-a 1.0"), ("twin", "pkg-b 2.0")}


def test_unreadable_metadata_never_breaks_import(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr("robench.plugins.entry_points", broken)
    try:
        assert [str(p) for p in discover(reload=True)] == [
            "plugins '*' from installed packages: unreadable: OSError: disk on fire"
        ]
        assert "baseline" in AUGMENTATIONS and "clean" in METRICS
    finally:
        monkeypatch.undo()
        discover(reload=True)


# --- data-set and model plugins ----------------------------------------------------------------

TOYSET_SOURCE = """
import numpy as np

def load(arg, split, *, root):
    '''Toy data: class k is brightness 60 k; arg = images per class.'''
    n = int(arg or 5)
    labels = np.repeat(np.arange(3), n)
    images = np.broadcast_to(60 * labels[:, None, None, None], (len(labels), 8, 8, 3))
    return images.astype(np.uint8) + (split == "test"), labels, ["dark", "grey", "light"]

def floats(arg, split, *, root):
    return np.zeros((3, 8, 8, 3)), np.arange(3), ["a", "b", "c"]

def crashes(arg, split, *, root):
    raise KeyError("no such shard")
"""


def test_dataset_plugin(install: Install, capsys) -> None:
    groups = {
        "robench.datasets": {
            "toyset": "robench_toyset:load",
            "floaty": "robench_toyset:floats",
            "crashy": "robench_toyset:crashes",
        }
    }
    install("robench-toyset 1.0", groups, {"robench_toyset": TOYSET_SOURCE})
    assert DATASETS.entry("toyset").description.startswith("Toy data: class k")
    data = load_dataset("toyset:4", "train", per_class=2, subset_seed=1, progress=False)
    assert data.images.shape == (6, 3, 8, 8) and data.classes == ["dark", "grey", "light"]
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.identity.name == "toyset:4" and "robench-toyset 1.0" in data.identity.source
    assert data.identity.subset == "2 per class (seed 1)"
    assert len(load_dataset("toyset", "test", progress=False)) == 15  # bare name: arg None
    splits = check_dataset("toyset:3")
    assert splits["train"].identity.content_hash != splits["test"].identity.content_hash
    with pytest.raises(DataError, match=r"returned images of dtype float64 .* expected uint8"):
        load_dataset("floaty", "test", progress=False)
    with pytest.raises(DataError, match=r"'crashy' \(robench-toyset 1.0\) failed: KeyError"):
        load_dataset("crashy:x", "test", progress=False)
    with pytest.raises(DataError, match=r"use one of cifar10, .*, toyset\[:<arg>\] \(plugins\)"):
        load_dataset("toyst:4", "test", progress=False)
    out = list_output(capsys)
    assert any(
        line.split()[:3] == ["dataset", "toyset", "robench-toyset"] for line in out.split("\n")
    )


TINYNETS_SOURCE = """
import torch
from timm.models import register_model

@register_model
def robench_test_tinynet(pretrained=False, num_classes=10, **kwargs):
    '''A one-layer test net.'''
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, num_classes))

@register_model
def wrn_16_2(pretrained=False, **kwargs):
    '''A hijacker of a built-in name.'''
    raise AssertionError("the built-in wrn_16_2 must win")
"""


def test_model_plugin(install: Install, capsys) -> None:
    builtin = timm.models.model_entrypoint("wrn_16_2")
    groups = {"robench.models": {"tinynets": "robench_toynets", "wrong": "robench_toynets:x"}}
    with pytest.warns(UserWarning, match="Overwriting wrn_16_2"):  # timm's own warning
        install("robench-toynets 1.0", groups, {"robench_toynets": TINYNETS_SOURCE})
    assert MODELS.entry("robench_test_tinynet").origin == "robench-toynets 1.0"
    assert MODELS.entry("robench_test_tinynet").description == "A one-layer test net."
    check_model("robench_test_tinynet")
    assert timm.models.model_entrypoint("wrn_16_2") is builtin
    assert sum(p.numel() for p in create_model("wrn_16_2", 10).parameters()) == 691674
    assert {str(p) for p in PROBLEMS} == {
        "model 'tinynets' from robench-toynets 1.0: model 'wrn_16_2' is already provided by "
        "built-in; kept that one",
        "model 'wrong' from robench-toynets 1.0: robench_toynets:x must name a module "
        "(pkg.models), not an object",
    }
    out = list_output(capsys)
    rows = [line.split()[:3] for line in out.splitlines()]
    assert ["model", "robench_test_tinynet", "robench-toynets"] in rows
    assert ["model", "wrn_16_2", "built-in"] in rows


# --- robench list ------------------------------------------------------------------------------


def test_list_shows_every_kind_with_origin_and_description(capsys) -> None:
    out = list_output(capsys)
    lines = out.splitlines()
    assert lines[0].split() == ["kind", "name", "origin", "description"]
    rows = {tuple(line.split()[:3]) for line in lines[1:]}
    for row in [
        ("method", "ipmix", "built-in"),
        ("metric", "corruption", "built-in"),
        ("dataset", "imagefolder:<path>", "built-in"),
        ("model", "wrn_40_2", "built-in"),
    ]:
        assert row in rows
    assert "failed plugins" not in out
    assert all(len(line.split()) >= 4 for line in lines[1:])  # every row has a description


# --- the protocol checks catch what they promise to ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "preserves"),
    [
        ("baseline", {}, True),
        ("baseline", {"path": "sample"}, True),
        ("augmix", {}, True),
        ("cutmix", {}, False),
        ("mixup", {}, False),
    ],
)
def test_builtin_augmentations_pass_the_checks(name: str, options: dict, preserves: bool) -> None:
    check_augmentation(name, options=options, preserves_labels=preserves)


class GlobalRng(Augmentation):
    def sample(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.random.rand(1, 3, 32, 32).astype(np.float32)


class OutOfRange(Augmentation):
    def sample(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.random((1, 3, 32, 32), dtype=np.float32) * 255


class WrongDtype(Augmentation):
    def sample(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.random((1, 3, 32, 32))


class Relabels(Augmentation):
    def batch(self, x, y, rng):
        return x * float(rng.random()), torch.roll(y, 1)


class WrongViews(Augmentation):
    num_views = 3

    def sample(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.random((1, 3, 32, 32), dtype=np.float32)


class InPlace(Augmentation):
    def sample(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        image[0, 0] = rng.integers(0, 255)
        return rng.random((1, 3, 32, 32), dtype=np.float32)


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (GlobalRng, "used a global random generator"),
        (OutOfRange, r"sample\(\) output spans \[0.*, 2.*\], expected within \[0, 1\]"),
        (WrongDtype, r"sample\(\) gave float64, expected float32"),
        (Relabels, r"labels changed: got \[1, 3, 1, 4\], expected \[3, 1, 4, 1\]"),
        (WrongViews, r"sample\(\) gave shape \(1, 3, 32, 32\), expected \(3, 3, 32, 32\)"),
        (InPlace, r"sample\(\) modified its input image"),
    ],
)
def test_check_augmentation_catches(plugin: type[Augmentation], message: str) -> None:
    with pytest.raises(AssertionError, match=rf"augmentation '{plugin.__name__}': {message}"):
        check_augmentation(plugin)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("clean", {}),
        ("calibration", {}),
        ("pgd", {"steps": 2, "n": 8}),
        ("corruption", {"corruptions": ["contrast", "fog"], "severities": [1, 3]}),
    ],
)
def test_builtin_metrics_pass_the_checks(name: str, options: dict[str, Any]) -> None:
    """Their declared values, determinism, and per-example outcomes that give back the values."""
    check_metric(name, options=options)


def noisy_metric(model, data, ctx) -> MetricResult:
    return MetricResult(values={"x": torch.rand(1).item()})


def writes_data(model, data, ctx) -> MetricResult:
    data.images[0] = 0
    return MetricResult(values={"x": 1.0})


def trains_model(model, data, ctx) -> MetricResult:
    with torch.no_grad():
        next(model.parameters()).add_(1)
    return MetricResult(values={"x": 1.0})


def not_a_number(model, data, ctx) -> MetricResult:
    return MetricResult(values={"x": "high"})


def undeclared_value(model, data, ctx) -> MetricResult:
    return MetricResult(values={"x": 1.0, "y_extra": 2.0})


undeclared_value.values = {"x": ValueInfo("x"), "y_*_z": ValueInfo("y")}


def no_outcomes(model, data, ctx) -> MetricResult:
    return MetricResult(values={"x": 50.0}, records={"right": np.array([1.0, 0.0])})


no_outcomes.values = {"x": ValueInfo("x", ci="examples")}


def wrong_outcomes(model, data, ctx) -> MetricResult:
    return MetricResult(values={"x": 50.0}, records={"right": np.array([1.0, 1.0, 0.0])})


wrong_outcomes.values = no_outcomes.values
wrong_outcomes.per_example = lambda records, table: {"x": PerExample(records["right"], "all")}


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        (noisy_metric, "used a global random generator"),
        (writes_data, "modified the test data"),
        (trains_model, "modified the model"),
        (not_a_number, "value 'x' is str, not a number"),
        (undeclared_value, r"value 'y_extra' is not among its declared values \('x', 'y_\*_z'\)"),
        (no_outcomes, "declares 'x' with ci='examples' but has no metric.per_example"),
        (wrong_outcomes, "metric.per_example's outcomes give x = 33.33.*, not 50.0"),
    ],
)
def test_check_metric_catches(metric: Callable[..., MetricResult], message: str) -> None:
    with pytest.raises(AssertionError, match=rf"metric '{metric.__name__}': {message}"):
        check_metric(metric)
