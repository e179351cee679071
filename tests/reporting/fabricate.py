"""Fabricated run folders (metrics.json + tables + records.npz), written as robench writes them.

(A module of its own, with a name no other test folder uses, so tests can import it.)

Per-example outcomes are drawn first and every number in metrics.json is computed from them, so
the records and the values agree the way a real evaluation's do; ``values`` overrides numbers
for tests that need exact ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robench.evaluation.functional import (
    expected_calibration_error,
    reliability_table,
    rms_calibration_error,
)
from robench.io import hash_text
from robench.runs import write_metrics, write_records, write_tables

CORRUPTIONS = ["gaussian_noise", "fog", "frost", "jpeg_compression"]
# how much each method keeps of the baseline's corruption damage, and its clean error (%)
PROFILE = {
    "baseline": (1.0, 0.20),
    "cutmix": (1.0, 0.18),
    "augmix": (0.45, 0.19),
    "pixmix": (0.40, 0.19),
    "ipmix": (0.35, 0.18),
}
RESOLVED = {"augmix": {"jsd": True, "width": 3}, "ipmix": {"jsd": True, "k": 3}}


def fabricate_run(
    results_dir: Path,
    method: str = "baseline",
    seed: int = 0,
    *,
    config: str = "quick",
    model: str = "wrn_16_2",
    dataset: str = "cifar10-jpeg",
    epochs: int = 3,
    options: dict[str, Any] | None = None,
    n: int = 400,
    corruptions: list[str] = CORRUPTIONS,
    metrics: tuple[str, ...] = ("clean", "calibration", "corruption", "flip", "pgd", "ood"),
    values: dict[str, float] | None = None,
    test_hash: str = "testhash",
    extra: dict[str, dict[str, float]] | None = None,
) -> Path:
    """Write one finished run under ``results_dir/runs``; returns its folder. ``extra`` adds
    metric groups (``{metric: {value: number}}``), as a plugin metric would."""
    options, values = options or {}, values or {}
    keep, p_clean = PROFILE.get(method, (0.8, 0.2))
    rng = np.random.default_rng([seed, len(method), epochs, sum(map(ord, method))])
    labels = np.arange(n) % 10
    correct = rng.random(n) > p_clean
    pred = np.where(correct, labels, (labels + 1) % 10)
    confidence = np.clip(np.where(correct, 0.85, 0.6) + rng.normal(0, 0.1, n), 0.11, 1.0)
    difficulty = np.linspace(0.04, 0.12, len(corruptions))
    p_cs = p_clean + keep * difficulty[:, None] * np.arange(1, 6)[None, :]
    c_correct = rng.random((len(corruptions), 5, n)) > np.clip(p_cs, 0, 1)[..., None]
    adv_correct = rng.random(n // 2) > min(0.95, 0.5 + keep * 0.45)

    cfg = {
        "name": config,
        "seed": seed,
        "results_dir": str(results_dir),
        "data": {"dataset": f"imagefolder:/data/{dataset}", "root": "", "train_per_class": 100},
        "model": {"name": model, "options": {}},
        "augment": {"method": method, "options": options},
        "train": {"epochs": epochs, "batch_size": 128, "lr": 0.1, "workers": 0, "device": "cpu"},
        "evaluate": {"metrics": list(metrics), "batch_size": 500, "options": {}},
    }
    ident = {"method": method, "model": model, "options": options, "config": config}
    run_id = f"{config}-{method}-{model}-s{seed}-{hash_text(repr((ident, dataset, epochs)))[:8]}"
    run_dir = results_dir / "runs" / run_id
    table = pd.DataFrame(
        [
            {
                "corruption": name,
                "severity": s + 1,
                "error": 100.0 * (1 - c_correct[c, s].mean()),
                "rms_calibration_error": 5.0 + c + s,
                "n": n,
            }
            for c, name in enumerate(corruptions)
            for s in range(5)
        ]
    )
    results: dict[str, dict[str, float]] = {
        "clean": {"clean_error": 100.0 * (1 - correct.mean()), "clean_nll": 0.6},
        "calibration": {
            "rms_calibration_error": 100 * rms_calibration_error(confidence, correct),
            "ece": 100 * expected_calibration_error(confidence, correct),
        },
        "corruption": {
            "corruption_error": float(table["error"].mean()),
            "corruption_rms_calibration_error": float(table["rms_calibration_error"].mean()),
            **{
                f"corruption_error_{name}": float(err)
                for name, err in table.groupby("corruption", sort=False)["error"].mean().items()
            },
        },
        "flip": {"mfp": 10.0 * keep + seed * 0.1, "fp_rotate": 12.0 * keep, "fp_brightness": 8.0},
        "pgd": {"pgd_error": 100.0 * (1 - adv_correct.mean()), "pgd_clean_error_on_subset": 20.0},
        "ood": {"ood_auroc_mean": 80.0 + 15 * (1 - keep) + seed, "ood_auroc_gaussian": 90.0},
    }
    for group in results.values():
        for key in group.keys() & values.keys():
            group[key] = values[key]
    data = {"name": dataset, "split": "test", "count": n, "content_hash": test_hash}
    doc = {
        "run_id": run_id,
        "config": cfg,
        "seed": seed,
        "data": {
            "train": data | {"split": "train", "count": 1000, "content_hash": "trainhash"},
            "test": data,
            "eval": data,
        },
        "model": {"name": model, "parameters": 690000},
        "augment": {"method": method, "num_views": 1, **RESOLVED.get(method, {}), **options},
        "metrics": {m: results[m] for m in metrics} | (extra or {}),
    }
    write_metrics(run_dir, doc)
    if "corruption" in metrics:
        write_tables(run_dir, "corruption", {"errors": table})
    if "calibration" in metrics:
        write_tables(
            run_dir,
            "calibration",
            {
                "reliability": reliability_table(confidence, correct),
                "settings": pd.DataFrame([{"bin_size": 100, "skip_last_bin": False, "n_bins": 15}]),
            },
        )
    records = {
        "clean/label": labels,
        "clean/pred": pred,
        "clean/confidence": confidence,
        "calibration/confidence": confidence,
        "calibration/correct": correct,
        "corruption/correct": c_correct,
        "corruption/index": np.arange(n),
        "pgd/adv_correct": adv_correct,
    }
    prefixes = tuple(f"{m}/" for m in metrics)
    write_records(run_dir, {k: v for k, v in records.items() if k.startswith(prefixes)})
    return run_dir
