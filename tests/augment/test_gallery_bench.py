"""The gallery PNGs and the throughput table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from robench.augment import create_augmentation
from robench.augment.gallery import augmented_views, make_gallery, make_mixing_grid
from robench.bench.augment import bench_augment


def test_gallery_png(tmp_path: Path, image: np.ndarray, small_mixing: dict[str, int]) -> None:
    images = np.stack([image, image[::-1]])
    out = make_gallery(
        images, ["cutmix", "ipmix"], tmp_path / "g.png", views=3, options={"ipmix": small_mixing}
    )
    with Image.open(out) as png:
        w, h = png.size
    # 3 rows (baseline added) of 2 x (1 + 3) tiles, each 32 px upscaled 4x
    assert w > 8 * 32 * 4 and h > 3 * 32 * 4


def test_views_skip_the_clean_jsd_view(image: np.ndarray) -> None:
    plugin = create_augmentation("augmix", num_classes=10)
    views = augmented_views(plugin, image[None], 5, seed=0)
    assert views.shape == (1, 5, 32, 32, 3) and views.dtype == np.uint8
    assert len({v.tobytes() for v in views[0]}) == 5


def test_mixing_grid(tmp_path: Path) -> None:
    pictures = np.random.default_rng(0).integers(0, 256, (13, 36, 36, 3), dtype=np.uint8)
    with Image.open(make_mixing_grid(pictures, tmp_path / "m.png", columns=5)) as png:
        assert png.size[0] > 5 * 36 * 4 and png.size[1] > 3 * 36 * 4


def test_bench_table() -> None:
    table = bench_augment(["baseline", "augmix"], n_images=4)
    assert list(table["method"]) == ["baseline", "augmix", "augmix"]
    assert list(table["jsd"]) == [False, True, False]
    assert list(table["num_views"]) == [1, 3, 1]
    assert (table["images_per_s"] > 0).all() and (table["n_images"] == 4).all()
    # operators per 128-image batch: a flip and a crop against AugMix's op chains
    baseline_ops, augmix_ops, _ = table["batch_ops"]
    assert 0 < baseline_ops < 50 < augmix_ops
