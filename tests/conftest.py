"""Shared fixtures: a tiny learnable data set written as an .npz, and a config around it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robench.cli import main
from robench.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "cifar10-jpeg"


def run_in_process(*args: str) -> None:
    """``robench ARGS`` in this process: the steps of a fault test that are not killed need no
    process of their own (~6 s of imports each). Torch's thread count is restored afterwards,
    since a ``train.threads`` setting would otherwise stay for the tests that follow."""
    threads = torch.get_num_threads()
    try:
        assert main([*args]) == 0
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def _temporary_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Caches (decoded image folders, generated sets) go to a temporary folder, never to
    ./results/cache; tests that need a cache of their own set ROBENCH_CACHE again."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROBENCH_CACHE", str(tmp_path_factory.mktemp("robench-cache")))
        yield


@pytest.fixture
def shared_data() -> Path:
    """The CIFAR-10 data at hand beside the repository; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared CIFAR-10 data is not at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def repo_root() -> Path:
    return REPO


def make_npz(path: Path, n_train: int = 48, n_test: int = 24, classes: int = 4, seed: int = 0):
    """Class k is a noisy image of brightness ~ k: learnable in a few steps."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % classes
        base = (40 + 50 * y)[:, None, None, None]
        x = np.clip(base + rng.normal(0, 20, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
        return x, y.astype(np.int64)

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    names = np.array([f"class{k}" for k in range(classes)])
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, classes=names)
    return path


@pytest.fixture(scope="session")
def npz_maker():
    """:func:`make_npz` itself, for fixtures of wider scope that write their own sizes."""
    return make_npz


@pytest.fixture
def tiny_npz(tmp_path: Path) -> Path:
    return make_npz(tmp_path / "tiny.npz")


@pytest.fixture
def tiny_config(tmp_path: Path, tiny_npz: Path):
    """A factory: a 2-epoch wrn_16_2 run on the tiny set, with any overrides."""

    def build(*overrides: str) -> Config:
        base = [
            f'data.dataset="npz:{tiny_npz}"',
            f'results_dir="{tmp_path / "results"}"',
            'model.name="wrn_16_2"',
            "train.epochs=2",
            "train.batch_size=16",
            "train.lr=0.05",
            'train.device="cpu"',
            "evaluate.batch_size=64",
            'evaluate.metrics=["clean"]',
        ]
        return load_config(None, [*base, *overrides])

    return build


def official_augmix_checkpoint(net: nn.Module) -> dict:
    """What the official AugMix cifar.py saves: a DataParallel net's state dict among plain
    values, the optimizer's state included."""
    optimizer = torch.optim.SGD(net.parameters(), 0.1, momentum=0.9, nesterov=True)
    return {
        "epoch": 99,
        "dataset": "cifar10",
        "model": "wrn",
        "state_dict": nn.DataParallel(net).state_dict(),
        "best_acc": 0.95,
        "optimizer": optimizer.state_dict(),
    }
