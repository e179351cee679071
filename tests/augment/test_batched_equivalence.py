"""The batched (tensor, on-device) AugMix/PixMix/IPMix paths against the per-sample PIL reference.

Three levels:

* ops: each tensor op on real CIFAR images with the parameters the PIL op draws (for one image
  the vectorised draws consume the generator exactly as the scalar ones, so the same seed gives
  the same parameters), compared pixel by pixel with the tolerance table of
  :mod:`robench.augment.tensor_ops`;
* draws: the vectorised samplers against the scalar ones, stream for stream;
* methods: statistics of 1,024 augmented views (512 CIFAR images x 2 JSD views) per path.
  Each view is summarised against its own clean view (channel mean and std shifts, mean
  absolute change, fraction of unchanged pixels, whether it is unchanged), which removes most
  of the image-to-image variance. The two paths' averages must agree within 4 standard errors
  (two-sample z; about 1 in 16,000 per statistic for a correct path, and the seeds are fixed,
  so the test is deterministic), the distributions of the mean absolute change must pass a
  two-sample Kolmogorov-Smirnov test at p > 0.001, and the pooled pixel histograms (32 bins)
  must lie within a total variation distance of 0.05 (two seeds of the reference itself differ
  by 0.01-0.02). With 512 images this catches a wrong chain depth, chain length, severity or
  patch-size set (z of 4.6 to 8.4 when planted in trials); subtler slips (beta, one op missing,
  the quantisation mode) move these statistics by less than 3 standard errors, so they are
  the op-level and quantisation tests' job.

CPU only here (the code is device-agnostic): the CUDA smoke test and the CUDA no-sync test
(``torch.cuda.set_sync_debug_mode("error")`` around ``batch``) skip without a device; a
dispatch-mode check stands in for the latter on the CPU.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torch.utils._python_dispatch import TorchDispatchMode

from robench.augment import create_augmentation, ops, tensor_ops
from robench.augment import ipmix as ipmix_module
from robench.augment import mixing_ops as mo
from robench.augment import pixmix as pixmix_module
from robench.augment.base import to_float_chw
from robench.augment.crop_flip import flip_crop_batch
from robench.bench.augment import bench_augment
from robench.errors import ConfigError

CIFAR_TEST = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-jpeg" / "test"
METHODS = ["augmix", "pixmix", "ipmix"]
N_IMAGES = 512
#: ops whose tensor form is exact on every input; the others allow 1 grey level, rarely
EXACT = set(tensor_ops.TENSOR_OPS) - {ops.rotate, ops.shear_x, ops.shear_y}
AFFINE_FRACTION = 1e-4  # tensor_ops docstring: 1 level where PIL's value is 1e-9 below an int


@pytest.fixture(scope="module")
def cifar() -> np.ndarray:
    """N_IMAGES CIFAR-10 test images (uint8 (N, 32, 32, 3)), a fixed spread over the classes."""
    if not CIFAR_TEST.is_dir():
        pytest.skip(f"the shared CIFAR-10 data is not at {CIFAR_TEST}")
    files = sorted(CIFAR_TEST.glob("*/*.jpg"))
    pick = np.random.default_rng(1).choice(len(files), N_IMAGES, replace=False)
    return np.stack([np.asarray(Image.open(files[i]).convert("RGB")) for i in pick])


def chw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def build(name: str, path: str, **options):
    if name != "augmix":
        options = {"mixing_count": 50} | options
    return create_augmentation(name, num_classes=10, path=path, **options)


# --- ops -------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", list(tensor_ops.TENSOR_OPS), ids=lambda op: op.__name__)
def test_op_matches_pil(op, cifar: np.ndarray) -> None:
    diffs = []
    for i, image in enumerate(cifar[:64]):
        severity = 3 if i % 2 else 10  # 10: enhance factors above 1 (PIL's extrapolating blend)
        want = np.asarray(op(Image.fromarray(image), severity, np.random.default_rng(i)))
        x = chw(image[None])  # one op to choose from: choosing it draws nothing
        got = tensor_ops.random_ops_(x, np.arange(1), (op,), severity, np.random.default_rng(i))
        assert got.dtype == torch.uint8 and got.shape == (1, 3, 32, 32)
        diffs.append(np.abs(want.astype(int) - got[0].permute(1, 2, 0).numpy()))
    d = np.stack(diffs)
    if op in EXACT:
        assert d.max() == 0
    else:
        assert d.max() <= 1 and (d > 0).mean() <= AFFINE_FRACTION


def test_grouped_ops_land_on_their_images(cifar: np.ndarray) -> None:
    """Parameter-free ops drawn per image over a batch: each output is its own op's PIL result."""
    op_list = (ops.equalize, ops.autocontrast, ops.invert, ops.mirror)
    x = chw(cifar[:40])
    choice = np.random.default_rng(3).integers(len(op_list), size=40)
    out = tensor_ops.random_ops_(x.clone(), np.arange(40), op_list, 3, np.random.default_rng(3))
    for image, j, got in zip(cifar[:40], choice, out, strict=True):
        want = np.asarray(op_list[j](Image.fromarray(image), 3, np.random.default_rng(0)))
        assert np.array_equal(got.permute(1, 2, 0).numpy(), want)
    rows = np.array([1, 5, 7])  # only the rows asked for change
    out = tensor_ops.random_ops_(x.clone(), rows, op_list, 3, np.random.default_rng(3))
    untouched = np.setdiff1d(np.arange(40), rows)
    assert torch.equal(out[untouched], x[untouched])


def test_mixing_operators_match_numpy(cifar: np.ndarray) -> None:
    gen = torch.Generator().manual_seed(0)
    q_diff = []
    for i in range(100):
        x1, x2 = to_float_chw(cifar[i]), to_float_chw(cifar[i + 100])
        t1, t2 = torch.from_numpy(x1)[None], torch.from_numpy(x2)[None]
        got = tensor_ops.add(t1, t2, 3, np.random.default_rng(i), gen)[0].numpy()
        assert np.array_equal(got, mo.add(x1, x2, 3, np.random.default_rng(i)))  # bit for bit
        want = mo.multiply(x1, x2, 3, np.random.default_rng(i))
        got_t = tensor_ops.multiply(t1, t2, 3, np.random.default_rng(i), gen)
        np.testing.assert_allclose(got_t[0].numpy(), want, rtol=1e-6)  # pow: an ulp apart
        clamped = tensor_ops.quantize_clamped(got_t)[0].permute(1, 2, 0).numpy()
        q_diff.append(np.abs(clamped.astype(int) - mo.quantize_clamped(want)))
    assert np.stack(q_diff).max() <= 1 and (np.stack(q_diff) > 0).mean() < 1e-4


@pytest.mark.parametrize("name", ["random_pixels", "random_elems"])
def test_random_masks(name: str) -> None:
    op = getattr(tensor_ops, name)
    ones, zeros = torch.ones(200, 3, 32, 32), torch.zeros(200, 3, 32, 32)
    out = op(ones, zeros, 3, np.random.default_rng(0), torch.Generator().manual_seed(0))
    thr = np.random.default_rng(0).random(200)  # drawn first, one per image
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert np.abs(out.mean((1, 2, 3)).numpy() - thr).max() < 0.07
    same_mask = (out == out[:, :1]).all(dim=(1, 2, 3)).numpy()  # one mask for all channels
    if name == "random_pixels":
        assert same_mask.all()
    else:
        assert not same_mask[(thr > 0.1) & (thr < 0.9)].any()


def test_quantizers_match_numpy() -> None:
    g = np.random.default_rng(0)
    wide = (g.normal(0, 3, (3, 64, 64)) * g.choice([1, 1e3, 1e30], (3, 64, 64))).astype("f4")
    wide[0, 0, :2] = [np.inf, -np.inf]
    for name in ("quantize_faithful", "quantize_clamped"):
        got = getattr(tensor_ops, name)(torch.from_numpy(wide)[None])[0].permute(1, 2, 0)
        assert np.array_equal(got.numpy(), getattr(mo, name)(wide))
    wide[0, 0, 2] = np.nan  # faithful only: the reference's clamped cast of NaN is undefined
    got = tensor_ops.quantize_faithful(torch.from_numpy(wide)[None])[0].permute(1, 2, 0)
    assert np.array_equal(got.numpy(), mo.quantize_faithful(wide))


# --- vectorised draws ------------------------------------------------------------------------


def test_vectorised_draws_follow_the_scalar_streams(cifar: np.ndarray) -> None:
    plugin = build("pixmix", "batch")
    for seed in range(200):
        a, b = tensor_ops.sample_ab(3, np.random.default_rng(seed), 1)
        assert (a[0], b[0]) == mo.sample_ab(3, np.random.default_rng(seed))
        crop = plugin.mixing_pictures(1, np.random.default_rng(seed), torch.device("cpu"))[0]
        want = plugin.mixing.sample(np.random.default_rng(seed))
        assert np.array_equal(crop.permute(1, 2, 0).numpy(), want)
    chains = cifar[1:4]
    it = iter(chains)
    want = mo.augment_and_mix(cifar[0], lambda x, r: next(it), 3, 1.0, np.random.default_rng(5))
    got = tensor_ops.mix_chains(chw(cifar[:1]), chw(chains)[:, None], 1.0, np.random.default_rng(5))
    np.testing.assert_allclose(got[0].numpy(), want, atol=1e-6)


# --- methods ---------------------------------------------------------------------------------


def views_by_path(plugin, images: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(clean (N, 3, H, W), augmented (N, 2, 3, H, W)) from a JSD plugin on either path."""
    if plugin.has_sample:
        out = np.stack(
            [plugin.sample(im, np.random.default_rng([seed, i])) for i, im in enumerate(images)]
        )
        return out[:, 0], out[:, 1:]
    clean, views = [], []
    x = chw(images).float() / 255
    for start in range(0, len(x), 128):
        part = x[start : start + 128]
        out, _ = plugin.batch(part, torch.zeros(len(part)), np.random.default_rng([seed, start]))
        out = out.numpy().reshape(3, len(part), *x.shape[1:])
        clean.append(out[0])
        views.append(out[1:].swapaxes(0, 1))
    return np.concatenate(clean), np.concatenate(views)


def summarise(clean: np.ndarray, views: np.ndarray) -> dict[str, np.ndarray]:
    """Per augmented view, against its clean view; plus the pooled pixel histogram."""
    v = views.reshape(-1, 3, views.shape[-1] * views.shape[-2])
    c = np.repeat(clean, views.shape[1], axis=0).reshape(v.shape)
    change = np.abs(v - c)
    return {
        "mean_shift": v.mean(-1) - c.mean(-1),
        "std_shift": v.std(-1) - c.std(-1),
        "strength": change.mean((1, 2)),
        "unchanged_pixels": (change < 0.5 / 255).mean((1, 2)),
        "unchanged_view": (change.max((1, 2)) < 1e-5).astype(float),
        "histogram": np.histogram(v, 32, (0, 1))[0] / v.size,
    }


def z_score(a: np.ndarray, b: np.ndarray) -> float:
    se = np.sqrt(a.var(0) / len(a) + b.var(0) / len(b))
    return float(np.max(np.abs(a.mean(0) - b.mean(0)) / np.maximum(se, 1e-12)))


@pytest.mark.parametrize("name", METHODS)
def test_method_statistics_match_the_reference(name: str, cifar: np.ndarray) -> None:
    ref = summarise(*views_by_path(build(name, "sample", jsd=True), cifar, 0))
    fast = summarise(*views_by_path(build(name, "batch", jsd=True), cifar, 0))
    for key in ("mean_shift", "std_shift", "strength", "unchanged_pixels", "unchanged_view"):
        assert z_score(ref[key], fast[key]) < 4, key
    assert stats.ks_2samp(ref["strength"], fast["strength"]).pvalue > 1e-3
    assert 0.5 * np.abs(ref["histogram"] - fast["histogram"]).sum() < 0.05
    if name == "ipmix":  # all 3 chains the identity in (1/4)^3 of the views, no-op chains aside
        assert fast["unchanged_view"].mean() > 1 / 64 - 4 * np.sqrt(1 / 64 / 1024)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("jsd", [True, False])
def test_batch_path_protocol(name: str, jsd: bool, cifar: np.ndarray) -> None:
    plugin = build(name, "batch", jsd=jsd)
    assert plugin.has_batch and not plugin.has_sample and plugin.describe()["path"] == "batch"
    x, y = chw(cifar[:6]).float() / 255, torch.tensor([3, 1, 4, 1, 5, 9])
    out, labels = plugin.batch(x, y, np.random.default_rng(0))
    assert out.shape == (plugin.num_views * 6, 3, 32, 32) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1 and torch.equal(labels, y)
    assert torch.equal(out, plugin.batch(x, y, np.random.default_rng(0))[0])  # by seed
    assert not torch.equal(out, plugin.batch(x, y, np.random.default_rng(1))[0])
    if jsd:  # [clean | view 1 | view 2]: the clean view is the flip + crop, drawn first
        clean = flip_crop_batch(tensor_ops.to_uint8(x), np.random.default_rng(0))
        assert torch.equal(out[:6], tensor_ops.to_float(clean))
        assert not torch.equal(out[6:12], out[12:])
    again = pickle.loads(pickle.dumps(plugin))  # without the device copy of the mixing set
    assert again.describe() == plugin.describe()


def test_path_option() -> None:
    assert build("augmix", "sample").has_sample and build("ipmix", "sample").has_sample
    assert create_augmentation("pixmix", num_classes=10, mixing_count=50).has_batch
    with pytest.raises(ConfigError, match="path"):
        build("augmix", "gpu")


@pytest.mark.parametrize(("mode", "value"), [("faithful", 50), ("clamped", 255)])
def test_ipmix_batch_quantizes_like_the_reference(
    mode: str, value: int, cifar, monkeypatch
) -> None:
    def overshoot_np(x1, x2, beta, rng):
        return np.full_like(x1, 1.2)

    def overshoot(x1, x2, params, gen):
        return torch.full_like(x1, 1.2)  # 306 after x 255: wraps to 50, or clamps to 255

    monkeypatch.setattr(ipmix_module, "IPMIX_MIXINGS", (overshoot_np,))
    mix = tensor_ops.TensorMix(lambda beta, rng, n: [], overshoot)
    monkeypatch.setattr(ipmix_module, "TENSOR_MIXINGS", {overshoot_np: mix})
    plugin = build("ipmix", "batch", quantize=mode)
    y = chw(cifar[:20])
    out = y.clone()
    plugin.patch_steps_(out, np.arange(20), y, y, np.random.default_rng(0), torch.Generator())
    changed = (out != y).any(1)
    assert changed.any() and (out.permute(0, 2, 3, 1)[changed] == value).all()


def test_pixmix_batch_clamps_every_round(cifar, monkeypatch) -> None:
    def overshoot_np(x1, x2, beta, rng):
        raise AssertionError("the batch path must not call the numpy operator")

    def overshoot(x1, x2, params, gen):
        assert x1.min() >= 0 and x1.max() <= 1  # the previous round was clamped
        return x1 * 3 - 1

    monkeypatch.setattr(pixmix_module, "PIXMIX_MIXINGS", (overshoot_np,))
    mix = tensor_ops.TensorMix(lambda beta, rng, n: [], overshoot)
    monkeypatch.setattr(pixmix_module, "TENSOR_MIXINGS", {overshoot_np: mix})
    plugin = build("pixmix", "batch")
    out = plugin.batch_views(chw(cifar[:64]), chw(cifar[64:128]), np.random.default_rng(0))
    assert out.min() == 0 and out.max() == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", METHODS)
def test_cuda_batch_path(name: str, cifar: np.ndarray) -> None:
    plugin = build(name, "batch", jsd=True)
    x = chw(cifar[:32]).float().div(255).cuda()
    out, _ = plugin.batch(x, torch.zeros(32, device="cuda"), np.random.default_rng(0))
    assert out.device.type == "cuda" and out.shape == (96, 3, 32, 32)
    assert out.min() >= 0 and out.max() <= 1


def noise_batch(n: int) -> torch.Tensor:
    """n seeded noise images as the trainer hands them over (uint8 / 255): enough for checks
    that do not depend on content."""
    images = np.random.default_rng(0).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    return torch.from_numpy(images).float().div(255)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("jsd", [True, False])
def test_cuda_batch_path_never_syncs(name: str, jsd: bool) -> None:
    """All draws are made on the host and sent without waiting: a synchronising call (a
    blocking copy, ``.item()``, ``nonzero``...) inside ``batch`` raises."""
    plugin = build(name, "batch", jsd=jsd)
    x = noise_batch(128).cuda()
    y = torch.zeros(128, dtype=torch.long, device="cuda")
    plugin.batch(x, y, np.random.default_rng(0))  # the mixing set's one-time device copy
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for seed in range(3):
            plugin.batch(x, y, np.random.default_rng(seed))
    finally:
        torch.cuda.set_sync_debug_mode("default")


class _SyncingOps(TorchDispatchMode):
    """Records the aten ops that wait for the device on CUDA (data-dependent shapes, scalars
    read back to the host), and boolean-mask indexing."""

    SYNCING = frozenset(
        [
            "nonzero",
            "_local_scalar_dense",
            "masked_select",
            "unique",
            "_unique2",
            "unique_dim",
            "unique_consecutive",
            "repeat_interleave",
            "is_nonzero",
            "equal",
            "masked_scatter_",
        ]
    )

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._overloadpacket.__name__
        masks = args[1] if name.startswith("index") and len(args) > 1 else None
        if name in self.SYNCING or (
            isinstance(masks, list | tuple)
            and any(isinstance(m, torch.Tensor) and m.dtype == torch.bool for m in masks)
        ):
            self.found.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", METHODS)
def test_batch_path_has_no_syncing_ops(name: str) -> None:
    """The CPU stand-in for the CUDA check above: no op of ``batch`` needs a device value on
    the host."""
    options = {"p_source": "mixing_or_op", "all_ops": True} if name == "ipmix" else {}
    plugin = build(name, "batch", jsd=True, **options)
    x = noise_batch(64)
    with _SyncingOps() as mode:
        plugin.batch(x, torch.zeros(64, dtype=torch.long), np.random.default_rng(0))
    assert mode.found == []


def test_upload_keeps_values_dtypes_and_shapes() -> None:
    arrays = [
        np.arange(5, dtype=np.int64),
        np.array([[True, False, True]]),
        np.zeros((0, 4), np.float32),
        np.linspace(-1, 1, 7, dtype=np.float64).reshape(7, 1),
        np.arange(9, dtype=np.uint8)[::2],  # not contiguous
        np.float32([0.1, 3e38]),
    ]
    cpu = torch.device("cpu")
    packed = tensor_ops.send_packed([np.ascontiguousarray(a) for a in arrays], cpu)
    for sent in (tensor_ops.upload(arrays, cpu), packed):
        for a, t in zip(arrays, sent, strict=True):
            assert t.dtype == torch.from_numpy(np.ascontiguousarray(a)).dtype
            assert t.shape == a.shape and np.array_equal(t.numpy(), a)


def test_byte_shortcuts_are_exact() -> None:
    """What the batched paths do on uint8 images instead of the obvious op gives the same
    bytes: quantizing :func:`to_float` gives every byte back (selecting operators skip the
    round trip), ``select_`` is ``torch.where``, ``copy_rows_`` is ``index_copy_`` and
    ``crops`` is slicing."""
    byte = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 256)
    for quantize in tensor_ops.TENSOR_QUANTIZERS.values():
        assert torch.equal(quantize(tensor_ops.to_float(byte)), byte)
    g = torch.Generator().manual_seed(0)
    x1, x2 = (torch.randint(0, 256, (6, 3, 5, 7), dtype=torch.uint8, generator=g) for _ in "ab")
    for shape in [(6, 3, 5, 7), (6, 1, 5, 7), (6, 1, 5, 1)]:
        mask = torch.rand(shape, generator=g) < 0.5
        want = torch.where(mask, x1, x2)
        assert torch.equal(tensor_ops.select_(mask, x1.clone(), x2), want)
        assert torch.equal(tensor_ops.select_(mask, x1.float(), x2.float()), want.float())
    index = torch.tensor([4, 0, 2])
    for dst in (torch.zeros(5, 3, 8, 8, dtype=torch.uint8), torch.zeros(5, 3, 5, 7).byte()):
        src = torch.randint(0, 256, (3, *dst.shape[1:]), dtype=torch.uint8, generator=g)
        want = dst.clone().index_copy_(0, index, src)
        assert torch.equal(tensor_ops.copy_rows_(dst, index, src), want)
    source, top, left = torch.tensor([0, 5, 0]), torch.tensor([0, 3, 1]), torch.tensor([2, 0, 5])
    got = tensor_ops.crops(x1, source, top, left, (2, 2))
    for i, (j, t, u) in enumerate(zip(*(v.tolist() for v in (source, top, left)), strict=True)):
        assert torch.equal(got[i], x1[j, :, t : t + 2, u : u + 2])


def test_mix_groups_on_bytes_match_the_float_path() -> None:
    """IPMix mixes uint8 chain states: every operator group must give what quantizing the mix
    of the float images gives."""
    g = torch.Generator().manual_seed(1)
    x1, x2 = (torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=g) for _ in "ab")
    mixes = list(tensor_ops.TENSOR_MIXINGS.values())
    groups = tensor_ops.MixGroups.draw(mixes, [7, 12, 0, 21], 3.0, np.random.default_rng(0))
    sent = tensor_ops.upload(groups.host(), x1.device)
    quantize = tensor_ops.quantize_faithful
    floats = groups.apply(
        tensor_ops.to_float(x1), tensor_ops.to_float(x2), sent, torch.Generator().manual_seed(2)
    )
    got = groups.apply(x1.clone(), x2.clone(), sent, torch.Generator().manual_seed(2), quantize)
    assert torch.equal(got, quantize(floats))


def test_bench_times_both_paths() -> None:
    table = bench_augment(["baseline", "augmix"], n_images=8)
    assert list(table["method"]) == ["baseline", "augmix", "augmix"]
    assert table["speedup"].isna().tolist() == [True, False, False]
    augmix = table[table["method"] == "augmix"]
    assert (augmix["sample_images_per_s"] > 0).all() and (augmix["batch_images_per_s"] > 0).all()
    ratio = augmix["batch_images_per_s"] / augmix["sample_images_per_s"]
    np.testing.assert_allclose(augmix["speedup"], ratio)
