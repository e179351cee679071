"""CIFAR-10-P sequences (``make_cifar_p.py``) and the flip probability (``cifar-p-eval.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robench.data import perturbations as P
from robench.data.corruption_constants import TEST_PERTURBATIONS
from robench.errors import ConfigError
from robench.evaluation.functional import flip_probability

GOLDENS = Path("/work/shared/goldens/metrics.json")


def rngs(n: int, seed: int = 0) -> list[np.random.Generator]:
    return [np.random.default_rng([seed, i]) for i in range(n)]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Smooth random images (3): geometric sequences move content, not just noise."""
    rng = np.random.default_rng(0)
    base = rng.uniform(30, 220, (3, 4, 4, 3))
    return np.clip(np.kron(base, np.ones((1, 8, 8, 1))), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- flip probability


@pytest.mark.skipif(not GOLDENS.is_file(), reason="shared goldens not available")
def test_flip_probability_matches_reference():
    for case in json.loads(GOLDENS.read_text())["flip"]:
        got = flip_probability(np.array(case["predictions"]), case["noise_perturbation"])
        assert got == pytest.approx(case["flip_probability"], abs=1e-6)


def test_flip_probability_by_hand():
    preds = np.array([[0, 0, 1, 1, 0], [2, 2, 2, 2, 2]])
    # consecutive: seq 0 flips at 0->1? no; 0->1 yes; 1->1 no; 1->0 yes: 2 of 4; seq 1: 0 of 4
    assert flip_probability(preds, noise=False) == pytest.approx((2 / 4 + 0) / 2)
    # noise: against frame 0: 0, 1, 1, 0 -> 2 of 4 (the same here by chance), then a real split
    assert flip_probability(preds, noise=True) == pytest.approx(0.25)
    preds = np.array([[0, 1, 0, 1]])
    assert flip_probability(preds, noise=False) == 1.0
    assert flip_probability(preds, noise=True) == pytest.approx(2 / 3)  # 1, 0, 1 vs frame 0
    # difficulty 2: sub-sequences [0, 0] and [1, 1] never flip; noise ignores difficulty
    assert flip_probability(preds, noise=False, difficulty=2) == 0.0
    assert flip_probability(preds, noise=True, difficulty=2) == pytest.approx(2 / 3)


def test_flip_probability_checks():
    with pytest.raises(ConfigError):
        flip_probability(np.zeros((3,)), noise=False)
    with pytest.raises(ConfigError):
        flip_probability(np.zeros((2, 1)), noise=False)
    with pytest.raises(ConfigError):
        flip_probability(np.zeros((2, 3)), noise=False, difficulty=3)


# --------------------------------------------------------------------------- sequences


def test_the_ten_test_sequences():
    assert len(TEST_PERTURBATIONS) == 10 and "spatter" in TEST_PERTURBATIONS
    assert "snow" not in TEST_PERTURBATIONS  # commented out in cifar-p-eval.py
    assert P.FRAMES["motion_blur"] == 21 and P.FRAMES["translate"] == 16
    assert {n for n in P.ALL_PERTURBATIONS if P.is_noise(n)} == set(P.NOISE_LEVELS)


@pytest.mark.parametrize("name", P.ALL_PERTURBATIONS)
def test_sequence_contract(images, name):
    seqs = P.perturb_batch(images, name, rngs(3))
    assert seqs.dtype == np.uint8 and seqs.shape == (3, P.FRAMES[name], 32, 32, 3)
    np.testing.assert_array_equal(seqs, P.perturb_batch(images, name, rngs(3)))
    np.testing.assert_array_equal(P.perturb(images[1], name, rngs(3)[1]), seqs[1])
    # frames move (spatter leaves ~1 % of images dry, so look at the most varied sequence)
    assert max(len({frame.tobytes() for frame in seq}) for seq in seqs) > P.FRAMES[name] // 2


@pytest.mark.parametrize("name", sorted(P.NOISE_LEVELS))
def test_noise_sequences_start_clean(images, name):
    seqs = P.perturb_batch(images, name, rngs(3))
    np.testing.assert_array_equal(seqs[:, 0], images)
    assert not np.array_equal(seqs[:, 1], seqs[:, 2])  # fresh noise every frame


def test_gaussian_noise_strength_by_difficulty():
    grey = np.full((2, 32, 32, 3), 128, np.uint8)
    for difficulty, sigma in enumerate(P.NOISE_LEVELS["gaussian_noise"], start=1):
        seqs = P.perturb_batch(grey, "gaussian_noise", rngs(2), difficulty=difficulty)
        assert seqs[:, 1:].astype(float).std() / 255 == pytest.approx(sigma, rel=0.03)
    with pytest.raises(ConfigError):
        P.perturb_batch(grey, "gaussian_noise", rngs(2), difficulty=4)


def test_shot_noise_strength():
    grey = np.full((2, 32, 32, 3), 128, np.uint8)
    seqs = P.perturb_batch(grey, "shot_noise", rngs(2)).astype(float) / 255
    assert seqs[:, 1:].var() == pytest.approx((128 / 255) / 700, rel=0.05)


@pytest.mark.parametrize(("name", "frame"), [("rotate", 15), ("scale", 15), ("shear", 15),
                                             ("translate", 7)])  # fmt: skip
def test_identity_frames(images, name, frame):
    seqs = P.perturb_batch(images, name, rngs(3))
    np.testing.assert_array_equal(seqs[:, frame], images)


def test_translate_shifts_one_pixel_per_frame(images):
    seqs = P.perturb_batch(images, "translate", rngs(3))
    for i in (0, 10, 15):
        shift = i - 7
        if shift > 0:
            np.testing.assert_array_equal(seqs[:, i, :, shift:], images[:, :, :-shift])
            assert np.all(seqs[:, i, :, :shift] == 0)  # zero fill
        else:
            np.testing.assert_array_equal(seqs[:, i, :, : 32 + shift], images[:, :, -shift:])


def test_brightness_steps(images):
    seqs = P.perturb_batch(images, "brightness", rngs(3)).astype(int)
    assert np.abs(seqs[:, 15] - images).max() <= 1  # c = 0 up to the truncating cast
    v = seqs.max(axis=-1).mean(axis=(0, 2, 3))
    assert np.all(np.diff(v) >= 0) and v[-1] - v[0] > 90  # -0.225 .. +0.225 in V


def test_zoom_sequence_accumulates(images):
    seqs = P.perturb_batch(images, "zoom_blur", rngs(3)).astype(float)
    change = np.abs(seqs - images[:, None]).mean(axis=(0, 2, 3, 4))
    assert change[0] == 0 and np.all(np.diff(change[1:]) >= -0.05) and change[-1] > change[1]


def test_motion_blur_sweeps_angles(images):
    seqs = P.perturb_batch(images, "motion_blur", rngs(3))
    # -180 and 0 degrees blur along the same line in opposite directions, 90 degrees across it
    assert not np.array_equal(seqs[:, 0], seqs[:, 20])
    assert not np.array_equal(seqs[:, 10], seqs[:, 20])


def test_tilt_matrix():
    # frame 15 has no rotation but the reference's projection still scales by f / (f + 1)
    m = P.tilt_matrix(15, 32, 32)
    f = np.sqrt(2) * 32
    centre = m @ np.array([16.0, 16.0, 1.0])
    np.testing.assert_allclose(centre[:2] / centre[2], [16, 16])
    corner = m @ np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(corner[:2] / corner[2], 16 - 16 * f / (f + 1))


def test_spatter_drips_down():
    grey = np.full((1, 32, 32, 3), 40, np.uint8)
    seqs = P.perturb_batch(grey, "spatter", [np.random.default_rng(4)]).astype(int)
    wet = (seqs[0] - 40).max(axis=-1) > 0  # (frames, H, W)
    assert wet[0].any()
    rows = np.arange(32)[None, :, None]
    centre_of_mass = (wet * rows).sum(axis=(1, 2)) / np.maximum(wet.sum(axis=(1, 2)), 1)
    assert centre_of_mass[30] > centre_of_mass[0]
    assert np.all(seqs >= 40)  # water only adds colour


def test_gaussian_blur_grows(images):
    seqs = P.perturb_batch(images, "gaussian_blur", rngs(3)).astype(float)
    change = np.abs(seqs - images[:, None]).mean(axis=(0, 2, 3, 4))
    assert np.all(np.diff(change) >= -0.05) and change[-1] > 10 * change[0]


def test_input_checks(images):
    with pytest.raises(ConfigError):
        P.perturb_batch(images, "wobble", rngs(3))
    with pytest.raises(ConfigError):
        P.perturb_batch(images.astype(np.float32), "rotate", rngs(3))
    with pytest.raises(ConfigError):
        P.perturb_batch(images, "rotate", rngs(2))
