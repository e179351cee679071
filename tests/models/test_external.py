"""Models trained elsewhere: checkpoint formats, the input normalisation, pretrained weights and
RobustBench's zoo (through a stand-in for ``robustbench.utils``, and the real one if installed)."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from torch import nn

from robench.errors import CheckpointError, ConfigError
from robench.models import Normalized, create_model
from robench.models.checkpoints import hash_state, read_state_dict
from robench.models.external import load_model
from tests.conftest import official_augmix_checkpoint

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@pytest.fixture(scope="module")
def wrn() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("wrn_16_2", num_classes=4).eval()


def _timm_train_checkpoint(net: nn.Module) -> dict:
    """What timm's train.py saves: its argparse namespace, and an EMA copy beside the weights."""
    ema = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}
    args = argparse.Namespace(model="wrn_16_2", lr=0.1)
    return {"epoch": 3, "arch": "wrn_16_2", "state_dict": net.state_dict(), "args": args} | {
        "state_dict_ema": ema,
        "version": 2,
    }


FORMATS = {
    "plain": lambda net: net.state_dict(),
    "state_dict": lambda net: {"state_dict": net.state_dict()},
    "model": lambda net: {"model": net.state_dict(), "epoch": 1},
    "net": lambda net: {"net": net.state_dict(), "acc": 91.5},
    "augmix_official": official_augmix_checkpoint,
    "timm_train": _timm_train_checkpoint,
    "compiled_ddp": lambda net: {f"_orig_mod.module.{k}": v for k, v in net.state_dict().items()},
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_checkpoint_format_loads_the_same_weights(wrn, fmt, tmp_path) -> None:
    path = tmp_path / "ckpt.pth.tar"
    torch.save(FORMATS[fmt](wrn), path)
    model = load_model("wrn_16_2", checkpoint=path)
    reference = Normalized(wrn, (0.5,) * 3, (0.5,) * 3)
    assert hash_state(model) == hash_state(reference)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference(x))
    assert model.source["checkpoint"] == str(path.resolve()) and model.source["label"] == "ckpt"


def test_safetensors_and_pt_are_one_identity(wrn, tmp_path) -> None:
    safetensors.torch.save_file(wrn.state_dict(), tmp_path / "w.safetensors")
    torch.save(wrn.state_dict(), tmp_path / "w.pt")
    a = load_model("wrn_16_2", checkpoint=tmp_path / "w.safetensors")
    b = load_model("wrn_16_2", checkpoint=tmp_path / "w.pt")
    assert hash_state(a) == hash_state(b)
    assert a.source["sha256"] != b.source["sha256"]  # different files, the same weights


def test_official_augmix_wrn_40_2_checkpoint(tmp_path) -> None:
    torch.manual_seed(1)
    official = timm.create_model("wrn_40_2", num_classes=10)
    torch.save(official_augmix_checkpoint(official), tmp_path / "model_best.pth.tar")
    model = load_model("wrn_40_2", checkpoint=tmp_path / "model_best.pth.tar")
    assert model.model.num_classes == 10  # from the checkpoint's classifier
    assert model.mean.flatten().tolist() == [0.5] * 3 and model.std.flatten().tolist() == [0.5] * 3
    assert "official scripts' Normalize" in model.source["normalization"]
    torch.testing.assert_close(model.model.fc.weight, official.fc.weight)


def test_pickled_objects_are_refused(wrn, tmp_path) -> None:
    torch.save({"state_dict": wrn.state_dict(), "hook": types.SimpleNamespace(a=1)}, tmp_path / "p")
    with pytest.raises(CheckpointError, match="cannot be loaded safely") as err:
        read_state_dict(tmp_path / "p")
    assert "\n" not in str(err.value)
    torch.save(wrn, tmp_path / "whole.pt")  # a whole model, pickled
    with pytest.raises(CheckpointError, match=r"torch.save\(model\)"):
        read_state_dict(tmp_path / "whole.pt")


def test_no_state_dict_and_missing_file(tmp_path) -> None:
    torch.save({"epoch": 3, "best_acc": 0.5}, tmp_path / "meta.pt")
    with pytest.raises(CheckpointError, match=r"holds no state dict \(found: epoch, best_acc\)"):
        read_state_dict(tmp_path / "meta.pt")
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "absent.pt")


def test_keys_that_do_not_fit_are_named(wrn, tmp_path) -> None:
    state = {k: v for k, v in wrn.state_dict().items() if not k.startswith("block3.")}
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "cut.pt")
    with pytest.raises(CheckpointError) as err:
        load_model("wrn_16_2", checkpoint=tmp_path / "cut.pt")
    message = str(err.value)
    assert "\n" not in message
    assert "missing (block3.layer.0.bn1.weight" in message and "more)" in message
    assert "1 unexpected (extra.weight)" in message
    with pytest.raises(CheckpointError, match=r"size mismatch for fc\.weight"):
        load_model("wrn_16_2", checkpoint=tmp_path / "cut.pt", num_classes=7)


def test_normalisation_must_be_known(tmp_path) -> None:
    torch.manual_seed(0)
    net = timm.create_model("resnet18", num_classes=4)
    torch.save(net.state_dict(), tmp_path / "r18.pt")
    with pytest.raises(ConfigError, match="no input normalisation is known for a resnet18"):
        load_model("resnet18", checkpoint=tmp_path / "r18.pt")
    given = load_model(
        "resnet18", checkpoint=tmp_path / "r18.pt", mean=CIFAR10_MEAN, std=CIFAR10_STD
    )
    torch.testing.assert_close(given.mean.flatten(), torch.tensor(CIFAR10_MEAN))
    assert given.source["normalization"] == "given" and given.model.num_classes == 4
    as_is = load_model("resnet18", checkpoint=tmp_path / "r18.pt", normalize=False)
    assert as_is.mean.flatten().tolist() == [0.0] * 3 and as_is.std.flatten().tolist() == [1.0] * 3
    with pytest.raises(ConfigError, match="together"):
        load_model("resnet18", checkpoint=tmp_path / "r18.pt", mean=CIFAR10_MEAN)
    with pytest.raises(ConfigError, match="contradicts"):
        load_model(
            "resnet18", checkpoint=tmp_path / "r18.pt", normalize=False, mean=(0,) * 3, std=(1,) * 3
        )
    with pytest.raises(ConfigError, match="3 positive numbers"):
        load_model("resnet18", checkpoint=tmp_path / "r18.pt", mean=(0,) * 3, std=(1, 0, 1))


def test_a_robench_checkpoint_brings_its_normalisation(tmp_path) -> None:
    trained = create_model("resnet18", 4)  # robench's wrapper: ImageNet mean/std as buffers
    torch.save({"model": trained.state_dict(), "optimizer": {}}, tmp_path / "checkpoint.pt")
    model = load_model("resnet18", checkpoint=tmp_path / "checkpoint.pt")
    assert model.source["normalization"] == "recorded in the checkpoint"
    assert hash_state(model) == hash_state(trained)


def test_normalized_loads_the_networks_own_state_dict(wrn) -> None:
    wrapper = create_model("wrn_16_2", 4)
    wrapper.load_state_dict(wrn.state_dict())  # no "model." prefix, no mean/std
    torch.testing.assert_close(wrapper.model.fc.weight, wrn.fc.weight)
    assert wrapper.mean.flatten().tolist() == [0.5] * 3
    other = create_model("wrn_16_2", 4)
    other.load_state_dict(wrapper.state_dict())  # the wrapper's own form still works
    assert hash_state(other) == hash_state(wrapper)


def test_weights_are_needed_once(tmp_path) -> None:
    with pytest.raises(ConfigError, match="needs its weights"):
        load_model("wrn_16_2")
    with pytest.raises(ConfigError, match="one of the two"):
        load_model("wrn_16_2", checkpoint=tmp_path / "a.pt", pretrained=True)


@pytest.fixture(scope="module")
def pretrained_file(tmp_path_factory) -> Path:
    """timm's tiny test_resnet, its 1000-class head and all, as a local copy of its weights."""
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("pretrained") / "test_resnet.pth"
    torch.save(timm.create_model("test_resnet").state_dict(), path)
    return path


def test_pretrained_from_a_local_file(pretrained_file) -> None:
    model = load_model("test_resnet", pretrained=pretrained_file)
    assert model.source["pretrained"] == "test_resnet.r160_in1k"
    assert model.source["label"] == "test_resnet.r160_in1k"
    assert model.source["normalization"] == "timm's pretrained cfg of test_resnet.r160_in1k"
    assert model.mean.flatten().tolist() == [0.5] * 3  # test_resnet's cfg, not ImageNet's
    torch.testing.assert_close(model.model.fc.weight, torch.load(pretrained_file)["fc.weight"])


def test_model_options_pretrained_true(pretrained_file) -> None:
    """``model.options = {pretrained = true}`` once failed with "got multiple values for keyword
    argument 'pretrained'"; with a local file it fine-tunes from it with a new head."""
    overlay = {"file": str(pretrained_file)}
    model = create_model("test_resnet", 10, pretrained=True, pretrained_cfg_overlay=overlay)
    weights = torch.load(pretrained_file)
    torch.testing.assert_close(model.model.conv1[0].weight, weights["conv1.0.weight"])
    assert model.model.fc.weight.shape == (10, weights["fc.weight"].shape[1])


def test_pretrained_weights_that_cannot_be_read_are_one_line(tmp_path) -> None:
    overlay = {"file": str(tmp_path / "absent.pth")}
    with pytest.raises(ConfigError, match="timm's pretrained weights for 'test_resnet'") as err:
        create_model("test_resnet", 10, pretrained=True, pretrained_cfg_overlay=overlay)
    assert "\n" not in str(err.value) and "pretrained_cfg_overlay" in str(err.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_model("test_resnet", pretrained=tmp_path / "absent.pth")


# --- RobustBench's zoo ------------------------------------------------------------------------


class _ZooWRN(nn.Module):
    """RobustBench's Hendrycks2020AugMixWRNNet: the AugMix WRN-40-2 normalising inside."""

    def __init__(self) -> None:
        super().__init__()
        self.net = timm.create_model("wrn_40_2", num_classes=10)
        self.register_buffer("mu", torch.full((1, 3, 1, 1), 0.5))
        self.register_buffer("sigma", torch.full((1, 3, 1, 1), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mu) / self.sigma)


def _fake_load_model(model_name, model_dir="./models", dataset="cifar10", threat_model="Linf"):
    """``robustbench.utils.load_model`` as RobustBench 1.1.1 documents and writes it: the file
    ``<model_dir>/<dataset>/<threat_model>/<name>.pt``, loaded by ``torch.load`` without a
    ``weights_only`` of its own (here: an explicit False, as before torch 2.6)."""
    if model_name != "Hendrycks2020AugMix_WRN":
        raise KeyError(model_name)
    path = Path(model_dir) / dataset / threat_model / f"{model_name}.pt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    state = {k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()}
    model = _ZooWRN()
    model.net.load_state_dict(state)
    return model.eval()


@pytest.fixture
def fake_robustbench(monkeypatch) -> list[dict]:
    calls: list[dict] = []
    utils = types.ModuleType("robustbench.utils")

    def load(*args, **kwargs):
        calls.append(kwargs)
        return _fake_load_model(*args, **kwargs)

    utils.load_model = load
    package = types.ModuleType("robustbench")
    package.utils = utils
    monkeypatch.setitem(sys.modules, "robustbench", package)
    monkeypatch.setitem(sys.modules, "robustbench.utils", utils)
    return calls


def _zoo_folder(root: Path, payload: object = None) -> nn.Module:
    torch.manual_seed(3)
    net = timm.create_model("wrn_40_2", num_classes=10)
    folder = root / "cifar10" / "corruptions"
    folder.mkdir(parents=True)
    checkpoint = {"state_dict": nn.DataParallel(net).state_dict()}
    if payload is not None:
        checkpoint["payload"] = payload
    torch.save(checkpoint, folder / "Hendrycks2020AugMix_WRN.pt")
    return net


def test_robustbench_model_from_a_local_folder(fake_robustbench, tmp_path) -> None:
    net = _zoo_folder(tmp_path)
    model = load_model("robustbench:Hendrycks2020AugMix_WRN", num_classes=10, model_dir=tmp_path)
    assert fake_robustbench == [
        {"model_dir": tmp_path, "dataset": "cifar10", "threat_model": "corruptions"}
    ]
    assert model.source["name"] == "robustbench:cifar10/corruptions/Hendrycks2020AugMix_WRN"
    assert model.source["label"] == "Hendrycks2020AugMix_WRN"
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():  # taken as it is: the zoo's model normalises inside
        torch.testing.assert_close(model.eval()(x), net.eval()((x - 0.5) / 0.5))
    full = load_model("robustbench:cifar10/corruptions/Hendrycks2020AugMix_WRN", model_dir=tmp_path)
    assert hash_state(full) == hash_state(model)


def test_robustbench_loads_with_weights_only(fake_robustbench, tmp_path) -> None:
    _zoo_folder(tmp_path, payload=argparse.Namespace(run="me"))
    with pytest.raises(CheckpointError, match="RobustBench cannot load") as err:
        load_model("robustbench:Hendrycks2020AugMix_WRN", num_classes=10, model_dir=tmp_path)
    assert "Weights only load failed" in str(err.value) or "weights_only" in str(err.value)


def test_robustbench_errors(fake_robustbench, tmp_path, monkeypatch) -> None:
    with pytest.raises(CheckpointError, match="KeyError: 'Nobody2099'"):
        load_model("robustbench:Nobody2099", num_classes=10, model_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"put its checkpoint at .*corruptions/Hendrycks"):
        load_model("robustbench:Hendrycks2020AugMix_WRN", num_classes=10, model_dir=tmp_path)
    with pytest.raises(ConfigError, match="needs a test set of 10, 100 or 1000 classes"):
        load_model("robustbench:Hendrycks2020AugMix_WRN", num_classes=4)
    with pytest.raises(ConfigError, match="normalise inside"):
        load_model("robustbench:Hendrycks2020AugMix_WRN", num_classes=10, checkpoint="x.pt")
    monkeypatch.setitem(sys.modules, "robustbench.utils", None)  # not installed
    with pytest.raises(ConfigError, match="needs the robustbench package"):
        load_model("robustbench:Hendrycks2020AugMix_WRN", num_classes=10)


def test_real_robustbench_reads_the_local_folder(tmp_path) -> None:
    """The same, through the real robustbench where it is installed (docs/python-api.md)."""
    pytest.importorskip("robustbench.utils", reason="robustbench is an optional extra")
    net = _zoo_folder(tmp_path)
    model = load_model("robustbench:Hendrycks2020AugMix_WRN", num_classes=10, model_dir=tmp_path)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), net.eval()((x - 0.5) / 0.5))


def test_robustbench_model_through_the_cli(fake_robustbench, tmp_path, npz_maker) -> None:
    from robench.cli import main

    _zoo_folder(tmp_path / "zoo")
    data = npz_maker(tmp_path / "c10.npz", n_train=0, n_test=10, classes=10)
    args = ["evaluate", "--model", "robustbench:Hendrycks2020AugMix_WRN"]
    args += ["--model-dir", str(tmp_path / "zoo"), "--dataset", f"npz:{data}", "--metrics", "clean"]
    assert main([*args, "--results-dir", str(tmp_path / "results"), "--quiet"]) == 0
    (run,) = (tmp_path / "results" / "runs").iterdir()
    assert run.name.startswith("external_Hendrycks2020AugMix_WRN_robustbench_cifar10_corruptions_")
