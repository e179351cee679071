"""Evaluating a model trained elsewhere: one CLI command or a few lines of Python give a run of
kind "external" that the report, the leaderboard and the claims treat like a trained one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from torch import nn

import robench
from robench.cli import main
from robench.data import ImageData
from robench.errors import ConfigError, DataError
from robench.evaluation import EvalContext
from robench.reporting import check_claims
from tests.conftest import official_augmix_checkpoint

MEAN, STD = "0.4914,0.4822,0.4465", "0.2470,0.2435,0.2616"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread in these tests, restored for the tests that follow."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def resnet18_file(tmp_path: Path) -> Path:
    """A timm resnet18 saved outside robench, as a plain state dict."""
    torch.manual_seed(0)
    path = tmp_path / "resnet18.pt"
    torch.save(timm.create_model("resnet18", num_classes=4).state_dict(), path)
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("robench: error: "), err
    return err


def _cli_resnet18(resnet18_file: Path, data: Path, results: Path, *extra: str) -> list[str]:
    return [
        "evaluate",
        "--model",
        "resnet18",
        "--checkpoint",
        str(resnet18_file),
        "--dataset",
        f"npz:{data}",
        "--mean",
        MEAN,
        "--std",
        STD,
        "--results-dir",
        str(results),
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]


def test_one_command_gives_a_leaderboard_row(resnet18_file, tiny_npz, tmp_path, capsys) -> None:
    results = tmp_path / "results"
    assert main(_cli_resnet18(resnet18_file, tiny_npz, results, "--metrics", "clean")) == 0
    out = capsys.readouterr().out
    assert "run folder:" in out and "clean_error" in out
    (run,) = (results / "runs").iterdir()
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["kind"] == "external" and doc["config"]["augment"]["method"] == "resnet18"
    assert doc["model"]["source"]["normalization"] == "given"
    assert doc["model"]["mean"] == pytest.approx([0.4914, 0.4822, 0.4465])

    # the same command with another metric merges into the same run folder
    assert main(_cli_resnet18(resnet18_file, tiny_npz, results, "--metrics", "calibration")) == 0
    assert [p.name for p in (results / "runs").iterdir()] == [run.name]
    assert set(json.loads((run / "metrics.json").read_text())["metrics"]) == {
        "clean",
        "calibration",
    }

    assert main(["report", "--results-dir", str(results), "--no-plots"]) == 0
    board = pd.read_csv(results / "leaderboard.csv")
    assert len(board) == 1
    row = board.iloc[0]
    assert (row["label"], row["setting"]) == ("resnet18", "external / resnet18 / npz:tiny")
    assert (row["epochs"], row["train_images"], row["test_images"]) == (0, 0, 24)
    assert 0 <= row["clean_error"] <= 100 and row["rms_calibration_error"] >= 0


def test_the_same_in_python_is_the_same_run(resnet18_file, tiny_npz, tmp_path) -> None:
    results = tmp_path / "results"
    assert main(_cli_resnet18(resnet18_file, tiny_npz, results, "--metrics", "clean")) == 0
    data = robench.load_dataset(f"npz:{tiny_npz}", "test", progress=False)
    mean, std = (tuple(map(float, s.split(","))) for s in (MEAN, STD))
    model = robench.load_model("resnet18", checkpoint=resnet18_file, mean=mean, std=std)
    out = robench.evaluate(model, data, ["clean"], save_to=results, progress=False)
    (run,) = (results / "runs").iterdir()  # same weights, label, data and seed: one run
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["metrics"]["clean"] == out["clean"].values


def test_official_augmix_checkpoint_in_one_command(tmp_path, npz_maker, capsys) -> None:
    data = npz_maker(tmp_path / "c10.npz", n_train=0, n_test=20, classes=10)
    torch.manual_seed(1)
    net = timm.create_model("wrn_40_2", num_classes=10)
    torch.save(
        official_augmix_checkpoint(net),
        tmp_path / "checkpoint.pth.tar",
    )
    results = tmp_path / "results"
    args = ["evaluate", "--model", "wrn_40_2", "--checkpoint", str(tmp_path / "checkpoint.pth.tar")]
    args += ["--dataset", f"npz:{data}", "--metrics", "clean", "--label", "augmix"]
    assert main([*args, "--results-dir", str(results), "--quiet"]) == 0
    (run,) = (results / "runs").iterdir()
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["model"]["mean"] == [0.5] * 3 and doc["config"]["augment"]["method"] == "augmix"
    assert doc["model"]["source"]["checkpoint"] == str((tmp_path / "checkpoint.pth.tar").resolve())
    assert run.name.startswith("external_augmix_wrn_40_2-s0-")


def test_external_runs_join_claims(resnet18_file, tiny_npz, tmp_path) -> None:
    """Labelled with method names, external runs are claimed about like trained ones."""
    results = tmp_path / "results"
    other = tmp_path / "other.pt"
    torch.manual_seed(5)
    torch.save(timm.create_model("resnet18", num_classes=4).state_dict(), other)
    for path, label in ((resnet18_file, "augmix"), (other, "baseline")):
        cli = _cli_resnet18(path, tiny_npz, results, "--metrics", "clean", "--label", label)
        assert main(cli) == 0
    claims = tmp_path / "claims.toml"
    claims.write_text(
        '[defaults.recipe]\nconfig = "external"\nmodel = "resnet18"\ndataset = "npz:tiny"\n'
        'epochs = 0\n\n[[claim]]\ncheck = "augmix.clean_error < baseline.clean_error + 101"\n'
    )
    table = check_claims(claims, results)
    assert table["status"].tolist() == ["PASS"], table["note"].tolist()


def test_cli_refusals_are_one_line(resnet18_file, tiny_npz, tmp_path, capsys) -> None:
    assert main(["evaluate", str(resnet18_file)]) == 2
    assert f"--checkpoint {resnet18_file}" in _error_line(capsys)
    assert main(["evaluate"]) == 2
    assert "--model NAME --checkpoint FILE" in _error_line(capsys)
    assert main(["evaluate", str(tmp_path), "--model", "resnet18"]) == 2
    assert "not both" in _error_line(capsys)
    assert main(["evaluate", str(tmp_path), "--checkpoint", str(resnet18_file)]) == 2
    assert "--checkpoint describe a model trained elsewhere: add --model" in _error_line(capsys)
    assert main(["evaluate", "--model", "resnet18", "--checkpoint", str(resnet18_file)]) == 2
    assert "needs --dataset" in _error_line(capsys)
    base = ["evaluate", "--model", "resnet18", "--checkpoint", str(resnet18_file)]
    base += ["--dataset", f"npz:{tiny_npz}", "--results-dir", str(tmp_path / "r"), "--quiet"]
    assert main(base) == 2
    assert "no input normalisation is known for a resnet18 checkpoint" in _error_line(capsys)
    assert main([*base, "--mean", "0.5,0.5", "--std", STD]) == 2
    assert "mean needs 3 numbers" in _error_line(capsys)
    assert main([*base, "--no-normalize", "--mean", MEAN, "--std", STD]) == 2
    assert "contradicts" in _error_line(capsys)
    assert main([*base, "--no-normalize", "--metrics", "clen"]) == 2
    assert "clen" in _error_line(capsys)
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_an_external_run_folder_says_how_to_add_metrics(resnet18_file, tiny_npz, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(_cli_resnet18(resnet18_file, tiny_npz, results, "--metrics", "clean")) == 0
    (run,) = (results / "runs").iterdir()
    capsys.readouterr()
    assert main(["evaluate", str(run), "--metrics", "calibration"]) == 2
    assert "trained elsewhere" in _error_line(capsys)


def test_evaluate_refuses_a_bare_timm_network_and_a_wrong_head(tiny_npz) -> None:
    data = robench.load_dataset(f"npz:{tiny_npz}", "test", progress=False)
    bare = timm.create_model("resnet18", num_classes=4)
    with pytest.raises(ConfigError, match="bare timm network") as err:
        robench.evaluate(bare, data, ["clean"], progress=False)
    assert "\n" not in str(err.value) and "robench.Normalized" in str(err.value)
    wide = robench.Normalized(timm.create_model("resnet18", num_classes=10), (0,) * 3, (1,) * 3)
    with pytest.raises(ConfigError, match="10 outputs but npz:tiny has 4 classes"):
        robench.evaluate(wide, data, ["clean"], progress=False)
    # a module that is not a timm network is taken as taking [0, 1] pixels (RobustBench's rule)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))
    assert "clean" in robench.evaluate(plain, data, ["clean"], progress=False)


def test_image_data_from_tensors() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2])
    nhwc = ImageData.from_tensors(pixels, labels, name="mine")
    nchw = ImageData.from_tensors(torch.from_numpy(pixels).permute(0, 3, 1, 2), labels, name="m")
    floats = ImageData.from_tensors(
        torch.from_numpy(pixels).permute(0, 3, 1, 2) / 255, labels, name="f"
    )
    assert nhwc.identity.content_hash == nchw.identity.content_hash == floats.identity.content_hash
    assert nhwc.classes == ["0", "1", "2"] and nhwc.images.shape == (6, 3, 8, 8)
    assert nhwc.identity.to_dict()["count"] == 6 and nhwc.identity.split == "test"
    named = ImageData.from_tensors(pixels, labels, name="mine", classes=["a", "b", "c", "d"])
    assert named.num_classes == 4
    with pytest.raises(DataError, match=r"must lie in \[0, 1\]"):
        ImageData.from_tensors(torch.full((2, 3, 4, 4), 2.0), [0, 1], name="bad")
    with pytest.raises(DataError, match=r"label 3 is outside 0\.\.2"):
        ImageData.from_tensors(pixels, labels + 1, name="bad", classes=["a", "b", "c"])
    with pytest.raises(DataError, match="must hold 6 integer labels"):
        ImageData.from_tensors(pixels, labels[:3], name="bad")
    with pytest.raises(DataError, match=r"uint8 0\.\.255 or float"):
        ImageData.from_tensors(pixels.astype(np.int32), labels, name="bad")


def test_eval_context_defaults(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))
    ctx = EvalContext()
    assert ctx.cache_dir == tmp_path / "cache"
    assert ctx.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.delenv("ROBENCH_CACHE")
    assert EvalContext().cache_dir == Path("results/cache")


def test_pretrained_weights_from_a_local_file(tmp_path, capsys) -> None:
    """``--pretrained FILE``: timm's weights for the tag, read from a local copy (offline)."""
    torch.manual_seed(2)
    torch.save(timm.create_model("test_resnet").state_dict(), tmp_path / "test_resnet.pth")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), np.arange(6) * 100
    np.savez(tmp_path / "in1k.npz", x=x, y=y, classes=np.array([f"c{k}" for k in range(1000)]))
    results = tmp_path / "results"
    args = ["evaluate", "--model", "test_resnet", "--pretrained", str(tmp_path / "test_resnet.pth")]
    args += ["--dataset", f"npz:{tmp_path / 'in1k.npz'}", "--metrics", "clean"]
    assert main([*args, "--results-dir", str(results), "--quiet"]) == 0
    (run,) = (results / "runs").iterdir()
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["config"]["augment"]["method"] == "test_resnet.r160_in1k"
    assert doc["model"]["source"]["pretrained"] == "test_resnet.r160_in1k"
    assert doc["model"]["mean"] == [0.5] * 3  # test_resnet's pretrained cfg, not ImageNet's
