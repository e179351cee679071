"""docs/python-api.md as a user runs it: every ```python block, in order, in one namespace, in a
folder holding the files the page names (a 10-class test.npz, a timm resnet18.pt, an
AugMix-format model_best.pth.tar)."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import timm
import torch
from torch import nn

import robench.models  # noqa: F401  (registers the CIFAR architectures, wrn_40_2 among them, in timm)
from robench.reporting import gather_runs

DOC = "docs/python-api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.fixture
def doc_folder(tmp_path, monkeypatch, npz_maker):
    npz_maker(tmp_path / "test.npz", n_train=0, n_test=20, classes=10)
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet18", num_classes=10).state_dict(), tmp_path / "resnet18.pt")
    wrn = timm.create_model("wrn_40_2", num_classes=10)
    official = {"epoch": 99, "model": "wrn", "state_dict": nn.DataParallel(wrn).state_dict()}
    torch.save(official | {"best_acc": 0.9}, tmp_path / "model_best.pth.tar")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    return tmp_path


def test_every_python_example_runs(repo_root, doc_folder) -> None:
    blocks = python_blocks((repo_root / DOC).read_text())
    assert len(blocks) >= 6
    first = [line for line in blocks[0].splitlines() if line.strip()]
    assert len(first) <= 4  # the target: a checkpoint from elsewhere in 4 lines
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, DOC, "exec"), namespace)
    assert set(pd.read_csv(doc_folder / "results" / "leaderboard.csv")["label"]) == {"my-resnet18"}
    runs = gather_runs(doc_folder / "results")  # the report's rows, with the later run too
    assert set(runs["label"]) == {"my-resnet18", "augmix-official"}
    assert set(runs["config_name"]) == {"external"}
