"""The ImageNet-scale path on tiny folders the tests write: image folders streamed from disk with
the ImageNet transforms, ImageNet-C / ImageNet-R style folders, AlexNet mCE, IPMix's ImageNet
settings through the trainer, and the shipped ImageNet config."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from robench.augment import create_augmentation
from robench.config import load_config
from robench.data import load_dataset
from robench.data.folders import random_resized_crop_box
from robench.errors import ConfigError, DataError
from robench.evaluation import METRICS, EvalContext, check_metrics
from robench.evaluation.base import predict_logits
from robench.evaluation.corruption import resolve_constants
from robench.evaluation.functional import ALEXNET_CLEAN_ERROR, ALEXNET_ERRORS, alexnet_mce
from robench.pipeline import train
from robench.runs import read_metrics

CLASSES = ("ant", "bee", "cat")
# class k is an image of brightness ~ 40 + 80 k: learnable, and checkable by hand
LEVEL = {"ant": 40, "bee": 120, "cat": 200}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))


def write_images(folder: Path, per_class: int, sizes: tuple[int, int], seed: int, classes=CLASSES):
    """``folder/<class>/<i>.jpg`` (or .png), sides drawn from ``sizes``."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = rng.integers(sizes[0], sizes[1] + 1, size=2)
            pixels = np.clip(LEVEL[name] + rng.normal(0, 15, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.{'png' if i % 2 else 'jpg'}")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """ImageNet layout in small: train/ and val/, 3 classes x 4 images of 64-96 px."""
    root = tmp_path / "tiny"
    write_images(root / "train", 4, (64, 96), seed=0)
    write_images(root / "val", 4, (64, 96), seed=1)
    return root


@pytest.fixture
def imagenet_c(tmp_path: Path) -> Path:
    """ImageNet-C layout: <corruption>/<severity>/<class>/<image>, 64 px, 2 images per class."""
    root = tmp_path / "tiny-c"
    for c, name in enumerate(("gaussian_noise", "fog")):
        for severity in range(1, 6):
            write_images(root / name / str(severity), 2, (64, 64), seed=10 * c + severity)
    return root


class Brightness(torch.nn.Module):
    """Logits from the mean pixel: class k scores -(mean - level_k)^2, right on these folders."""

    def __init__(self, levels: list[float]) -> None:
        super().__init__()
        self.register_buffer("levels", torch.tensor(levels) / 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -100 * (x.mean((1, 2, 3))[:, None] - self.levels) ** 2


def ctx(**kw) -> EvalContext:
    return EvalContext(batch_size=5, progress=False, **kw)


# -- the data set on disk ---------------------------------------------------------------------


def test_folder_on_disk_lists_hashes_and_decodes_with_imagenet_transforms(folder: Path) -> None:
    test = load_dataset(f"imagefolder:{folder}", "test", image_size=64, progress=False)
    assert test.on_disk and test.classes == list(CLASSES) and len(test) == 12
    assert test.image_size == 64 and test.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert test.identity.source.startswith(str(folder / "val"))  # val/ serves as the test split
    # eval transform: Resize(floor(64 / 0.875) = 73) of the shorter side + CenterCrop(64)
    with Image.open(test.images.files[5]) as im:
        resized = TF.resize(im.convert("RGB"), 73, InterpolationMode.BILINEAR)
        expected = torch.from_numpy(np.array(TF.center_crop(resized, [64, 64]))).permute(2, 0, 1)
    assert torch.equal(test.images[5], expected)
    assert torch.equal(test.images[[5, 0]][0], expected) and test.images[2:6].shape == (
        4,
        3,
        64,
        64,
    )
    # the identity hashes names, sizes, labels and transform, not the pixels: cheap, and stable
    again = load_dataset(f"imagefolder:{folder}", "test", image_size=64, progress=False)
    assert again.identity.content_hash == test.identity.content_hash
    other = load_dataset(f"imagefolder:{folder}", "test", image_size=48, progress=False)
    assert other.identity.content_hash != test.identity.content_hash
    Path(test.images.files[0]).write_bytes(Path(test.images.files[1]).read_bytes() + b"\0")
    changed = load_dataset(f"imagefolder:{folder}", "test", image_size=64, progress=False)
    assert changed.identity.content_hash != test.identity.content_hash
    sub = load_dataset(f"imagefolder:{folder}", "train", image_size=64, per_class=2)
    assert len(sub) == 6 and sub.identity.subset == "2 per class (seed 0)"


def test_train_crops_are_drawn_from_the_sample_generator(folder: Path) -> None:
    train_set = load_dataset(f"imagefolder:{folder}", "train", image_size=64, progress=False)
    images = train_set.images
    a = images.train_image(3, np.random.default_rng([0, 3]))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, images.train_image(3, np.random.default_rng([0, 3])))
    views = [images.train_image(3, np.random.default_rng([s, 3])) for s in range(1, 6)]
    assert not all(np.array_equal(a, v) for v in views)
    # torchvision's RandomResizedCrop rules: area share in [0.08, 1], ratio in [3/4, 4/3]
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_box(90, 70, rng)
        assert 0 <= top <= 90 - h and 0 <= left <= 70 - w
        assert 0.08 * 0.9 <= h * w / (90 * 70) <= 1 and 0.7 <= w / h <= 1.4
    # a strip no allowed crop fits: the central crop at the nearest allowed ratio
    assert random_resized_crop_box(10, 400, np.random.default_rng(0)) == (0, 193, 10, 13)


def test_streamed_logits_equal_the_in_memory_ones(folder: Path) -> None:
    test = load_dataset(f"imagefolder:{folder}", "test", image_size=64, progress=False)
    model = Brightness([40.0, 120.0, 200.0])
    streamed = predict_logits(model, test.images, ctx())
    in_memory = predict_logits(model, test.images[:], ctx())
    assert torch.equal(streamed, in_memory)
    assert (streamed.argmax(1) == test.labels).all()  # the model is right on these folders
    clean = METRICS.get("clean")(model, test, ctx())
    assert clean.values["clean_error"] == 0.0


def test_a_handful_at_224(tmp_path: Path) -> None:
    write_images(tmp_path / "big" / "val", 2, (240, 320), seed=3)
    test = load_dataset(f"imagefolder:{tmp_path / 'big'}", "test", image_size=224)
    assert test.images.resize == 256 and test.images[:].shape == (6, 3, 224, 224)
    assert [resolve_constants("auto", s) for s in (32, 63, 64, 223, 224)] == [
        "cifar", "cifar", "tiny", "tiny", "imagenet"
    ]  # fmt: skip
    model = Brightness([40.0, 120.0, 200.0])
    result = METRICS.get("corruption")(
        model, test, ctx(), corruptions=["brightness", "contrast"], severities=[1, 2, 3, 4, 5]
    )
    settings = result.tables["settings"].iloc[0]
    assert settings["benchmark"] == "imagenet-c" and settings["constants"] == "imagenet"
    assert "mce_alexnet" in result.values and len(result.tables["errors"]) == 10


# -- ImageNet-C, ImageNet-R and AlexNet mCE -----------------------------------------------------


def test_generated_at_64_px_is_tiny_imagenet_c(folder: Path, tmp_path: Path) -> None:
    """64 px test images: the Tiny-ImageNet-C table by default, frost included (the CIFAR
    table's frost pictures are too small at 64 px)."""
    test = load_dataset(f"imagefolder:{folder}", "test", image_size=64, progress=False)
    model = Brightness([40.0, 120.0, 200.0])
    result = METRICS.get("corruption")(
        model, test, ctx(cache_dir=tmp_path), corruptions=["frost", "fog"], severities=[1, 5]
    )
    settings = result.tables["settings"].iloc[0]
    assert settings["benchmark"] == "tiny-imagenet-c" and settings["constants"] == "tiny"
    assert len(result.tables["errors"]) == 4 and "mce_alexnet" not in result.values
    (made,) = (tmp_path / "corruptions").glob("*/Tiny-ImageNet-C/frost.npy")
    assert np.load(made).shape == (2 * 12, 64, 64, 3)
    with pytest.raises(ConfigError, match="frost with the 'cifar' constants"):
        METRICS.get("corruption")(
            model, test, ctx(cache_dir=tmp_path), corruptions=["frost"], constants="cifar"
        )


def test_corruption_reads_an_imagenet_c_folder(folder: Path, imagenet_c: Path) -> None:
    """The same folder read at 64 px (Tiny-ImageNet-C: no AlexNet mCE) and at 224 px (each
    image resized and centre-cropped: ImageNet-C, with the AlexNet mCE)."""
    model = Brightness([40.0, 120.0, 200.0])
    for size, benchmark in ((64, "tiny-imagenet-c"), (224, "imagenet-c")):
        test = load_dataset(f"imagefolder:{folder}", "test", image_size=size, progress=False)
        result = METRICS.get("corruption")(
            model, test, ctx(), corruptions=["gaussian_noise", "fog"], source=str(imagenet_c)
        )
        table = result.tables["errors"]
        assert len(table) == 10 and (table["n"] == 6).all() and (table["error"] == 0).all()
        assert result.records["correct"].shape == (2, 5, 6)
        assert result.tables["settings"].iloc[0]["benchmark"] == benchmark
        # all right on both corruptions: CE_c = 0 / AlexNet's errors = 0
        assert result.values.get("mce_alexnet") == (0.0 if size == 224 else None)
    test = load_dataset(f"imagefolder:{folder}", "test", image_size=64, progress=False)
    sub = METRICS.get("corruption")(
        model, test, ctx(), corruptions=["fog"], source=str(imagenet_c), n_per_severity=4
    )
    assert (sub.tables["errors"]["n"] == 4).all()


def test_alexnet_mce_by_hand() -> None:
    # gaussian_noise: errors 60, 70, 80, 90, 100 (sum 400); AlexNet 5 x 88.6428 = 443.214
    # fog: 40 at every severity (sum 200); AlexNet 5 x 81.9324 = 409.662
    rows = [("gaussian_noise", s, 50.0 + 10 * s) for s in range(1, 6)]
    rows += [("fog", s, 40.0) for s in range(1, 6)]
    errors = pd.DataFrame(rows, columns=["corruption", "severity", "error"])
    out = alexnet_mce(errors, clean_error=25.0)
    ce = [400 / 443.214, 200 / 409.662]
    assert out["mce"] == pytest.approx(100 * sum(ce) / 2)
    assert out["mce"] == pytest.approx(69.5353, abs=1e-4)
    # relative: (sum E - 5 x 25) / (5 x AlexNet - 5 x 43.478), per corruption
    rel = [(400 - 125) / (443.214 - 217.39), (200 - 125) / (409.662 - 217.39)]
    assert out["relative_mce"] == pytest.approx(100 * sum(rel) / 2)
    assert out["relative_mce"] == pytest.approx(80.3917, abs=1e-4)
    assert pytest.approx(43.478) == ALEXNET_CLEAN_ERROR
    assert len(ALEXNET_ERRORS) == 15
    with pytest.raises(ConfigError, match="severities 1-5"):
        alexnet_mce(errors[errors["severity"] != 3], clean_error=25.0)
    with pytest.raises(ConfigError, match="no AlexNet errors for spatter"):
        alexnet_mce(errors.replace("fog", "spatter"), clean_error=25.0)


def test_rendition_predicts_among_the_classes_present(folder: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "r", 3, (70, 90), seed=5, classes=("ant", "cat"))
    test = load_dataset(f"imagefolder:{folder}", "test", image_size=64, progress=False)
    # the bee logit would win everywhere without the mask
    model = Brightness([40.0, 120.0, 200.0])
    biased = torch.nn.Sequential(model, BiasBee())
    masked = METRICS.get("rendition")(biased, test, ctx(), source=str(tmp_path / "r"))
    assert masked.values["rendition_error"] == 0.0 and len(masked.records["correct"]) == 6
    unmasked = METRICS.get("rendition")(biased, test, ctx(), source=str(tmp_path / "r"), mask=False)
    assert unmasked.values["rendition_error"] == 100.0
    with pytest.raises(ConfigError, match="source"):
        check_metrics(["rendition"], {})


class BiasBee(torch.nn.Module):
    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits + torch.tensor([0.0, 50.0, 0.0])


# -- bad input: one clear line ------------------------------------------------------------------


def test_bad_layouts_give_one_clear_line(folder: Path, imagenet_c: Path, tmp_path: Path) -> None:
    test = load_dataset(f"imagefolder:{folder}", "test", image_size=64, progress=False)
    model = Brightness([40.0, 120.0, 200.0])
    problems = []
    with pytest.raises(DataError, match="not imagefolder") as e:
        load_dataset("npz:x.npz", "test", image_size=64)
    problems.append(e)
    (imagenet_c / "fog" / "2" / "dog").mkdir()
    (imagenet_c / "fog" / "2" / "dog" / "0.jpg").write_bytes(
        (imagenet_c / "fog" / "2" / "ant" / "0.jpg").read_bytes()
    )
    with pytest.raises(DataError, match=r"not among the 3 training classes \(\[dog\]\)") as e:
        METRICS.get("corruption")(model, test, ctx(), corruptions=["fog"], source=str(imagenet_c))
    problems.append(e)
    with pytest.raises(DataError, match=r"snow/1 does not exist") as e:
        METRICS.get("corruption")(
            model, test, ctx(), corruptions=["gaussian_noise", "snow"], source=str(imagenet_c)
        )
    problems.append(e)
    with pytest.raises(DataError, match="not a folder") as e:
        METRICS.get("rendition")(model, test, ctx(), source=str(tmp_path / "nowhere"))
    problems.append(e)
    Path(test.images.files[5]).write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"cannot decode image .*1\.png") as e:
        predict_logits(model, test.images, ctx())
    problems.append(e)
    (folder / "val" / "bee").rename(folder / "val" / "bees")
    with pytest.raises(DataError, match="different classes") as e:
        train(_config(folder, tmp_path, "baseline", "{padding = 0}"), progress=False)
    problems.append(e)
    assert all("\n" not in str(p.value) for p in problems)


# -- training through the trainer -----------------------------------------------------------------

IPMIX_IMAGENET_64 = (
    "{k = 3, t = 3, beta = 4, severity = 1, all_ops = true, patch_sizes = [4, 8, 16, 32, 64], "
    "p_source = 'mixing_or_op', padding = 0, path = 'sample', mixing_count = 8}"
)


def _config(folder: Path, tmp_path: Path, method: str, options: str, *extra: str):
    return load_config(
        None,
        [
            f'data.dataset="imagefolder:{folder}"',
            "data.image_size=64",
            f'results_dir="{tmp_path / "results"}"',
            'model.name="resnet18"',
            "train.epochs=1",
            "train.batch_size=6",
            "train.lr=0.01",
            'train.device="cpu"',
            f'augment.method="{method}"',
            f"augment.options={options}",
            "evaluate.batch_size=5",
            'evaluate.metrics=["clean"]',
            *extra,
        ],
    )


@pytest.mark.slow
def test_train_and_evaluate_baseline_and_ipmix_on_a_folder(
    folder: Path, imagenet_c: Path, tmp_path: Path
) -> None:
    write_images(tmp_path / "r", 2, (70, 90), seed=5, classes=("ant", "cat"))
    metrics = ["clean", "calibration", "corruption", "rendition"]
    options = (
        f"evaluate.options={{corruption = {{source = '{imagenet_c}', "
        f"corruptions = ['gaussian_noise', 'fog']}}, rendition = {{source = '{tmp_path / 'r'}'}}}}"
    )
    for method, opts in (("baseline", "{padding = 0}"), ("ipmix", IPMIX_IMAGENET_64)):
        cfg = _config(folder, tmp_path, method, opts, f"evaluate.metrics={metrics}", options)
        doc = read_metrics(train(cfg, progress=False))
        assert doc["data"]["train"]["source"].endswith("(on disk, RandomResizedCrop(64) + flip)")
        values = {k: v for m in doc["metrics"].values() for k, v in m.items()}
        for key in ("clean_error", "rms_calibration_error", "corruption_error"):
            assert math.isfinite(values[key]), (method, key)
        assert "mce_alexnet" not in values  # 64 px: the folder is read as Tiny-ImageNet-C
        assert 0 <= values["rendition_error"] <= 100
    assert doc["augment"]["patch_sizes"] == [4, 8, 16, 32, 64] and doc["augment"]["all_ops"]


@pytest.mark.slow
def test_folder_training_is_reproducible_with_workers(folder: Path, tmp_path: Path) -> None:
    """The crops come from the (seed, epoch, index) generator: DataLoader workers change nothing;
    the batch path gets the decoded crops too."""
    runs = [
        train(_config(folder, tmp_path / name, "baseline", opts, *extra), progress=False)
        for name, opts, extra in (
            ("w0", "{padding = 0, path = 'sample'}", ()),
            ("w2", "{padding = 0, path = 'sample'}", ("train.workers=2",)),
            ("batch", "{padding = 0}", ()),
        )
    ]
    losses = [read_metrics(r)["training"]["final_train_loss"] for r in runs]
    assert losses[0] == losses[1]
    assert math.isfinite(losses[2])


# -- the shipped ImageNet config ------------------------------------------------------------------


@pytest.mark.slow
def test_shipped_imagenet_config_loads_and_runs_a_few_steps(folder: Path, tmp_path: Path) -> None:
    path = REPO / "baselines" / "imagenet_ipmix_resnet50.toml"
    cfg = load_config(path)
    assert (cfg.data.image_size, cfg.model.name, cfg.train.epochs) == (224, "resnet50", 180)
    assert cfg.augment.options["patch_sizes"] == [4, 8, 16, 32, 64, 224]
    assert cfg.augment.options["all_ops"] and cfg.train.lr == 0.01
    # the benchmark folders are checked before any work: data/imagenet-c is not here
    with pytest.raises(DataError, match=r"'data/imagenet-c' is not a folder") as e:
        check_metrics(cfg.evaluate.metrics, cfg.evaluate.options)
    assert "\n" not in str(e.value)
    present = {name: {"source": str(tmp_path)} for name in ("corruption", "rendition")}
    check_metrics(cfg.evaluate.metrics, present)
    plugin = create_augmentation(
        "ipmix", num_classes=1000, image_size=224, **cfg.augment.options, mixing_count=2
    )
    assert plugin.describe()["p_source"] == "mixing_or_op" and plugin.num_views == 3
    # a few steps of the same recipe on the tiny folder at 64 px (patches up to the image side)
    small = load_config(
        path,
        [
            f'data.dataset="imagefolder:{folder}"',
            "data.image_size=64",
            "augment.options.patch_sizes=[4, 8, 16, 32, 64]",
            "augment.options.mixing_count=4",
            "data.train_per_class=2",
            "train.epochs=1",
            "train.batch_size=3",
            "train.workers=0",
            'train.device="cpu"',
            f'results_dir="{tmp_path / "results"}"',
        ],
    )
    with pytest.raises(DataError, match="not a folder"):  # stops before training, not after
        train(small, progress=False)
    assert not list((tmp_path / "results").rglob("checkpoint.pt"))
    run = train(small, progress=False, evaluate_after=False)
    assert math.isfinite(read_metrics(run)["training"]["final_train_loss"])
