"""The models stage: CIFAR architectures in timm, the pixel-space wrapper, create_model."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from robench.errors import ConfigError
from robench.models import CIFAR_MODELS, Normalized, count_parameters, create_model

# name -> (parameters at 10 classes, published size in millions or None). Every exact count was
# also derived by hand from the layer shapes; a published size (rounded in its source) must agree.
PARAMS: dict[str, tuple[int, float | None]] = {
    "wrn_16_2": (691_674, None),  # not in the WRN paper; 0.69-0.70 M in the distillation literature
    "wrn_40_2": (2_243_546, 2.2),  # Zagoruyko & Komodakis 2016; AugMix paper
    "wrn_40_4": (8_949_210, 8.9),  # Zagoruyko & Komodakis 2016
    "wrn_28_10": (36_479_194, 36.5),  # Zagoruyko & Komodakis 2016
    "resnet18_cifar": (11_173_962, 11.2),  # the usual CIFAR ResNet-18, 11.17 M
    "resnext29_32x4d": (6_807_882, None),  # cardinality 4 x width 32 per 64 planes: by hand only
    "densenet_bc_100": (769_162, 0.8),  # Huang et al. 2017, Table 2
    # Huang et al. list DenseNet-40 (k=12) at 1.0 M with a 16-channel stem (1,019,722); the
    # AugMix code's stem has 2k = 24 channels, which adds 39,576.
    "densenet_40_12": (1_059_298, None),
    "allconv": (1_409_674, 1.4),  # AugMix AllConvNet
}


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def test_cifar_models_are_registered_in_timm() -> None:
    assert sorted(CIFAR_MODELS) == sorted(PARAMS)
    assert set(CIFAR_MODELS) <= set(timm.list_models())


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_builds_through_timm_and_forwards(name: str) -> None:
    for num_classes in (10, 100):
        model = timm.create_model(name, num_classes=num_classes).eval()
        assert model.num_classes == num_classes
        with torch.no_grad():
            assert model(torch.rand(2, 3, 32, 32)).shape == (2, num_classes)
    cfg = model.pretrained_cfg
    assert cfg["mean"] == cfg["std"] == (0.5, 0.5, 0.5)
    assert cfg["input_size"] == (3, 32, 32)
    assert cfg["num_classes"] == 10
    assert timm.create_model(name).num_classes == 10  # the cfg's default


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count_matches_published(name: str) -> None:
    exact, published_m = PARAMS[name]
    count = count_parameters(timm.create_model(name, num_classes=10))
    assert count == exact
    if published_m is not None:
        digits = len(str(published_m).split(".")[1])
        assert round(count / 1e6, digits) == published_m


def test_normalized_wrapper_matches_manual_normalisation() -> None:
    inner = timm.create_model("wrn_16_2", num_classes=10).eval()
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    wrapped = Normalized(inner, mean, std).eval()
    x = torch.rand(2, 3, 32, 32)
    manual = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), inner(manual))
    assert wrapped.mean.shape == wrapped.std.shape == (1, 3, 1, 1)
    assert {"mean", "std"} <= set(wrapped.state_dict())
    assert count_parameters(wrapped) == count_parameters(inner)


def test_create_model_takes_mean_std_from_pretrained_cfg() -> None:
    model = create_model("wrn_16_2", 10)
    assert isinstance(model, Normalized)
    assert model.mean.flatten().tolist() == [0.5, 0.5, 0.5]
    assert model.std.flatten().tolist() == [0.5, 0.5, 0.5]
    bare = create_model("wrn_16_2", 10, pretrained_cfg_overlay={"mean": None, "std": None})
    torch.testing.assert_close(bare.mean.flatten(), torch.tensor(IMAGENET_DEFAULT_MEAN))
    torch.testing.assert_close(bare.std.flatten(), torch.tensor(IMAGENET_DEFAULT_STD))


def test_plain_timm_model_works() -> None:
    model = create_model("resnet18", 10).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    torch.testing.assert_close(model.mean.flatten(), torch.tensor(IMAGENET_DEFAULT_MEAN))


def test_unknown_model_name_is_a_config_error_with_suggestion() -> None:
    with pytest.raises(ConfigError) as err:
        create_model("resnet18_cifr", 10)
    message = str(err.value)
    assert "\n" not in message
    assert "did you mean 'resnet18_cifar'" in message
    assert "robench list" in message
    assert "timm.list_models()" in message


def test_other_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="in_chans=1"):
        create_model("wrn_16_2", 10, in_chans=1)
    with pytest.raises(ConfigError, match="no pretrained weights"):
        timm.create_model("wrn_16_2", pretrained=True)


def test_legacy_100_head_reproduces_ipmix_resnet18_bug() -> None:
    x = torch.rand(2, 3, 32, 32)
    legacy = timm.create_model("resnet18_cifar", num_classes=10, legacy_100_head=True).eval()
    default = timm.create_model("resnet18_cifar", num_classes=10).eval()
    with torch.no_grad():
        assert legacy(x).shape == (2, 100)
        assert default(x).shape == (2, 10)
    assert legacy.num_classes == 100
    assert count_parameters(legacy) - count_parameters(default) == 90 * (512 + 1)


def _dropout_rates(model: nn.Module) -> list[float]:
    return [m.p for m in model.modules() if isinstance(m, nn.Dropout)]


def test_drop_rate_reaches_dropout_modules() -> None:
    wrn = create_model("wrn_16_2", 10, drop_rate=0.3)
    # 6 blocks with dropout between their convs, plus the (unused) head dropout
    assert sorted(_dropout_rates(wrn)) == [0.0] + [0.3] * 6
    for name in ("resnet18_cifar", "resnext29_32x4d", "densenet_bc_100"):
        assert _dropout_rates(create_model(name, 10, drop_rate=0.2)) == [0.2]
    assert _dropout_rates(create_model("allconv", 10)) == [0.0, 0.5, 0.5]  # the code's default
    assert _dropout_rates(create_model("allconv", 10, drop_rate=0.1)) == [0.0, 0.1, 0.1]

    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(wrn.train()(x), wrn(x))
        assert torch.equal(wrn.eval()(x), wrn(x))


def test_wrn_init_follows_official_code() -> None:
    model = timm.create_model("wrn_16_2", num_classes=10)
    conv = model.block3.layer[0].conv2  # 128 x 128 x 3 x 3 weights
    expected = math.sqrt(2.0 / (3 * 3 * 128))
    assert abs(conv.weight.std().item() / expected - 1) < 0.02
    assert torch.all(model.bn1.weight == 1)
    assert torch.all(model.bn1.bias == 0)
    assert torch.all(model.fc.bias == 0)


def test_state_dict_names_follow_official_code() -> None:
    """Released checkpoints of the AugMix/IPMix code load into these models by name."""
    keys = {
        "wrn_40_2": [
            "block1.layer.0.convShortcut.weight",
            "block3.layer.5.conv2.weight",
            "fc.bias",
        ],
        "resnext29_32x4d": [
            "conv_1_3x3.weight",
            "stage_3.0.downsample.1.weight",
            "classifier.weight",
        ],
        "densenet_40_12": ["dense3.11.conv1.weight", "trans2.conv1.weight", "bn1.running_var"],
        "densenet_bc_100": ["dense1.15.conv2.weight", "trans1.bn1.weight", "fc.weight"],
        "allconv": ["features.22.weight", "features.29.running_mean", "classifier.bias"],
        "resnet18_cifar": ["conv1.0.weight", "conv3_x.0.shortcut.0.weight", "fc.weight"],
    }
    for name, expected in keys.items():
        assert set(expected) <= set(timm.create_model(name).state_dict()), name


def test_allconv_pools_top_left_window_like_the_official_code() -> None:
    model = timm.create_model("allconv").eval()
    with torch.no_grad():
        features = model.forward_features(torch.rand(2, 3, 32, 32))
        pooled = model.forward_head(features, pre_logits=True)
    assert features.shape == (2, 192, 10, 10)
    torch.testing.assert_close(pooled, features[:, :, :8, :8].mean((2, 3)))


def test_reset_classifier() -> None:
    model = timm.create_model("wrn_16_2", num_classes=10).eval()
    x = torch.rand(2, 3, 32, 32)
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)
    model.reset_classifier(5)
    assert model(x).shape == (2, 5)
    assert model.num_classes == 5
