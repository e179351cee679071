"""The mixing sets: procedural fractals (deterministic, distinct, cached) and image folders."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robench.augment.ipmix import IPMix
from robench.augment.pixmix import PixMix
from robench.data import mixing
from robench.errors import ConfigError, DataError


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fewer chaos-game points: same random systems, much less rendering work."""
    monkeypatch.setattr(mixing, "WALKERS", 32)
    monkeypatch.setattr(mixing, "STEPS", 4)


def test_deterministic_by_seed_and_prefix_stable() -> None:
    a = mixing.fractal_pictures(60, 32, seed=0)
    assert a.shape == (60, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, mixing.fractal_pictures(60, 32, seed=0))
    assert np.array_equal(a[:20], mixing.fractal_pictures(20, 32, seed=0))
    assert not np.array_equal(a, mixing.fractal_pictures(60, 32, seed=1))
    assert a.std() > 20  # pictures, not blank canvases


def test_default_set_has_1000_distinct_pictures(fast: None) -> None:
    pictures = mixing.fractal_pictures(1000, 16)
    assert len({p.tobytes() for p in pictures}) == 1000
    for default_user in (mixing.load_mixing_set, IPMix, PixMix):
        params = inspect.signature(default_user).parameters
        assert params["count" if "count" in params else "mixing_count"].default == 1000


def test_cache_is_reused(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = mixing.cached_fractals(50, 32, 0)
    (folder,) = (cache / "mixing").iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["count"] == 50 and manifest["seed"] == 0 and manifest["version"] >= 1
    assert len(manifest["sha256"]) == 64

    def fail(*args):
        raise AssertionError("regenerated although the cache is valid")

    monkeypatch.setattr(mixing, "fractal_pictures", fail)
    assert np.array_equal(mixing.cached_fractals(50, 32, 0), first)


def spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    generate = mixing.fractal_pictures

    def counting(count: int, size: int, seed: int) -> np.ndarray:
        calls.append(count)
        return generate(count, size, seed)

    monkeypatch.setattr(mixing, "fractal_pictures", counting)
    return calls


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "manifest", "missing"])
def test_cache_is_regenerated(cache: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    first = mixing.cached_fractals(50, 32, 0)
    (folder,) = (cache / "mixing").iterdir()
    npy, manifest = folder / "pictures.npy", folder / "manifest.json"
    if damage == "corrupt":  # same size, one byte flipped: only the checksum can tell
        raw = bytearray(npy.read_bytes())
        raw[-10] ^= 0xFF
        npy.write_bytes(bytes(raw))
    elif damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:200])
    elif damage == "manifest":
        meta = json.loads(manifest.read_text())
        manifest.write_text(json.dumps(meta | {"seed": 7}))
    else:
        manifest.unlink()
    calls = spy(monkeypatch)
    again = mixing.cached_fractals(50, 32, 0)
    assert calls == [50] and np.array_equal(again, first)
    assert mixing.cached_fractals(50, 32, 0) is not None and calls == [50]  # repaired


def test_other_parameters_get_their_own_cache(cache: Path) -> None:
    mixing.cached_fractals(50, 32, 0)
    mixing.cached_fractals(50, 32, 1)
    assert len(list((cache / "mixing").iterdir())) == 2


def test_load_fractals_resized_and_cropped() -> None:
    ms = mixing.load_mixing_set("fractals", 50, 32)
    assert ms.images.shape == (50, 36, 36, 3) and not ms.images.flags.writeable
    rng = np.random.default_rng(0)
    crops = [ms.sample(rng) for _ in range(200)]
    assert all(c.shape == (32, 32, 3) and c.dtype == np.uint8 for c in crops)
    assert len({c.tobytes() for c in crops}) > 150


def write_png(path: Path, h: int, w: int, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def test_imagefolder(tmp_path: Path) -> None:
    root = tmp_path / "set"
    write_png(root / "a" / "deep" / "er" / "one.png", 40, 60, 10)  # any depth below a class
    write_png(root / "b" / "two.png", 72, 72, 20)
    (root / "b" / "notes.txt").write_text("ignored")
    ms = mixing.load_mixing_set(f"imagefolder:{root}", 1000, 32)
    assert len(ms) == 2 and ms.sizes.tolist() == [[36, 54], [36, 36]]
    rng = np.random.default_rng(0)
    values = {int(ms.sample(rng)[0, 0, 0]) for _ in range(50)}
    assert values == {10, 20}  # crops never reach into the padding
    flat = tmp_path / "flat"
    write_png(flat / "x.png", 8, 8, 0)  # no sub-folder: torchvision ImageFolder refuses it
    with pytest.raises(DataError):
        mixing.load_mixing_set(f"imagefolder:{flat}", 1000, 32)
    with pytest.raises(DataError):
        mixing.load_mixing_set(f"imagefolder:{tmp_path / 'nowhere'}", 1000, 32)
    with pytest.raises(ConfigError):
        mixing.load_mixing_set("mandelbrot", 1000, 32)
    with pytest.raises(ConfigError):
        mixing.load_mixing_set("fractals", 0, 32)
