"""Augmentation tests: a session-wide temporary cache, small mixing sets, a few test images."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Generated mixing sets go to a temporary cache, never to ./results/cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def image() -> np.ndarray:
    """A smooth, full-range uint8 32x32 RGB test picture (gradients plus a bright square)."""
    yy, xx = np.mgrid[0:32, 0:32]
    img = np.stack([xx * 8, yy * 8, (xx + yy) * 4], axis=-1)
    img[10:20, 12:22] = 255
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture
def small_mixing() -> dict[str, int]:
    """Plugin options that keep the fractal mixing set small (one generation chunk)."""
    return {"mixing_count": 50}
