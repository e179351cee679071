"""``robench bench suite``: one row per metric plus the total, the sets prepared before timing."""

from __future__ import annotations

import time
from pathlib import Path

from robench.bench.suite import bench_suite
from robench.cli import main
from robench.data import corrupted_sets, load_dataset
from robench.evaluation import EvalContext
from robench.models import create_model

OPTIONS = {
    "corruption": {"corruptions": ["gaussian_noise", "contrast"], "severities": [1, 5]},
    "pgd": {"n": 8, "steps": 2},
}


def test_suite_times_each_metric_after_preparing_the_sets(
    tiny_npz: Path, tmp_path: Path, monkeypatch
) -> None:
    generated: list[float] = []  # seconds of each generation
    real = corrupted_sets.generate_cifar_c

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = real(*args, **kwargs)
        generated.append(time.perf_counter() - start)
        return out

    monkeypatch.setattr(corrupted_sets, "generate_cifar_c", timed)
    data = load_dataset(f"npz:{tiny_npz}", "test", progress=False)
    ctx = EvalContext(batch_size=16, cache_dir=tmp_path / "cache", progress=False)
    metrics = ["clean", "corruption", "pgd"]
    table = bench_suite(create_model("wrn_16_2", data.num_classes), data, metrics, ctx=ctx,
                        options=OPTIONS)  # fmt: skip
    assert list(table["metric"]) == [*metrics, "total"]
    assert (table["seconds"] > 0).all() and (table["prepare_seconds"] >= 0).all()
    # generated once, in the stand-in pass (its time is in prepare_seconds, not in seconds)
    assert len(generated) == 1
    assert table.set_index("metric").loc["corruption", "prepare_seconds"] >= generated[0]
    assert list((tmp_path / "cache" / "corruptions").glob("*/*/gaussian_noise.npy"))
    total = table.set_index("metric").loc["total", "seconds"]
    assert total >= table["seconds"].iloc[:-1].sum() * 0.99
    assert set(table["n_test"]) == {len(data)} and set(table["device"]) == {"cpu"}


def test_cli_suite_needs_a_dataset(capsys) -> None:
    assert main(["bench", "suite", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("robench: error: bench suite needs --dataset") and "\n" not in err


def test_bench_eval_times_the_suite_forward_against_the_bare_forward() -> None:
    from robench.bench.inference import bench_eval

    table = bench_eval(model="wrn_16_2", n_images=64, batch_sizes=(16, 32), device="cpu")
    assert table["batch_size"].tolist() == [16, 32]
    assert table["forward"].tolist() == ["eager", "eager"]  # nothing is captured on the CPU
    assert (table[["images_per_s", "bare_forward_images_per_s"]] > 0).all().all()
    ratio = table["bare_forward_images_per_s"] / table["images_per_s"]
    assert ratio.tolist() == table["time_ratio_to_bare_forward"].tolist()
