"""The command line as a user meets it: help, one-line errors with exit 2, train/evaluate/report."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from robench.cli import main
from robench.evaluation import base as evaluation_base
from robench.graphs import Captured
from robench.runs import read_metrics

TINY = [
    "--set",
    'model.name="wrn_16_2"',
    "--set",
    "train.batch_size=16",
    "--set",
    'train.device="cpu"',
    "--set",
    'evaluate.metrics=["clean"]',
    "--epochs",
    "1",
    "--quiet",
]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert err.startswith("robench: error: ")
    return err


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["report"], ["list"]])
def test_help(command, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: robench" in capsys.readouterr().out


def test_malformed_config(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = 'many'\n")
    assert main(["train", str(bad)]) == 2
    assert "'train.epochs' must be an integer" in _error_line(capsys)


def test_missing_data_root(tmp_path, capsys) -> None:
    code = main(["train", "--dataset", "cifar10", "--data-root", str(tmp_path / "nowhere"), *TINY])
    assert code == 2
    line = _error_line(capsys)
    assert str(tmp_path / "nowhere") in line and "cifar-10-batches-py" in line


def test_corrupt_image_file_is_named(tmp_path, capsys) -> None:
    for split in ("train", "test"):
        for k in range(2):
            folder = tmp_path / "set" / split / f"c{k}"
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((32, 32, 3), 60 * k, np.uint8)).save(folder / f"{i}.png")
    broken = tmp_path / "set" / "train" / "c1" / "broken.png"
    broken.write_bytes(b"not a png at all")
    results = tmp_path / "results"
    dataset = f"imagefolder:{tmp_path / 'set'}"
    code = main(["train", "--dataset", dataset, "--results-dir", str(results), *TINY])
    assert code == 2
    assert "broken.png" in _error_line(capsys)
    assert not (results / "runs").exists() or not any((results / "runs").iterdir())


def test_unknown_method_suggests_a_name(tiny_npz, tmp_path, capsys) -> None:
    args = ["train", "--dataset", f"npz:{tiny_npz}", "--results-dir", str(tmp_path), *TINY]
    assert main([*args, "--method", "basline"]) == 2
    assert "did you mean 'baseline'" in _error_line(capsys)


def test_train_evaluate_report(tiny_npz, tmp_path, capsys, monkeypatch) -> None:
    results = tmp_path / "results"
    base = ["train", "--dataset", f"npz:{tiny_npz}", "--results-dir", str(results), *TINY]
    assert main([*base, "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "clean_error" in out and "run folder:" in out
    assert max(map(len, out.splitlines()[1:])) <= 80  # a vertical name/value table
    assert main([*base, "--seed", "2"]) == 0
    runs = sorted((results / "runs").iterdir())
    assert len(runs) == 2
    capsys.readouterr()
    mtime = (runs[0] / "checkpoint.pt").stat().st_mtime_ns
    assert main([*base, "--seed", "1"]) == 0  # asked again: its results, not an error
    out = capsys.readouterr().out
    assert "is already finished; its results:" in out and "clean_error" in out
    assert (runs[0] / "checkpoint.pt").stat().st_mtime_ns == mtime  # nothing retrained

    assert main(["evaluate", str(runs[0]), "--metrics", "clean", "--quiet"]) == 0
    assert "clean_error" in capsys.readouterr().out
    numbers, made = [], []  # the captured forward (here: on fixed buffers), the eager numbers
    monkeypatch.setattr(evaluation_base, "Captured", lambda *a: made.append(a[1]) or Captured(*a))
    for forward in ("eager", "captured"):
        pgd = ["--metrics", "clean,pgd", "--option", "pgd.steps=2", "--option", "pgd.n=16"]
        assert main(["evaluate", str(runs[0]), *pgd, "--forward", forward, "--quiet"]) == 0
        numbers.append(read_metrics(runs[0])["metrics"])
        made.append(forward)
    assert made[0] == "eager" and made.count("evaluate.forward") >= 2  # logits and PGD
    assert numbers[0] == numbers[1] and "pgd" in numbers[1]

    assert main(["report", "--results-dir", str(results)]) == 0
    table = pd.read_csv(results / "runs.csv")  # one row per run; leaderboard.csv: per recipe
    assert len(table) == 2
    assert sorted(table.seed) == [1, 2]
    assert set(table.dataset) == {"npz:tiny"}
    assert table.clean_error.between(0, 100).all()


def test_evaluate_refuses_a_pickled_checkpoint(tiny_npz, tmp_path, capsys) -> None:
    import torch

    results = tmp_path / "results"
    base = ["train", "--dataset", f"npz:{tiny_npz}", "--results-dir", str(results), *TINY]
    assert main(base) == 0
    run = next((results / "runs").iterdir())

    # any pickled object that is not a tensor or plain container makes weights_only refuse it
    torch.save({"model": argparse.Namespace(payload="run me")}, run / "checkpoint.pt")
    capsys.readouterr()
    assert main(["evaluate", str(run), "--quiet"]) == 2
    assert "cannot be loaded safely" in _error_line(capsys)


def test_entry_point_exit_code(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "robench.cli", "train", str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("robench: error: config file")
    assert "Traceback" not in proc.stderr


def test_a_closed_pipe_ends_quietly(repo_root) -> None:
    """``robench list | head -0``: no error line, no traceback, the status of a stopped pipe."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run(
        [sys.executable, "-m", "robench.cli", "list"],
        cwd=repo_root,
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write_end)
    assert (proc.returncode, proc.stderr) == (141, "")


REFUSED = {"augment": "--variant", "train": "--dataset", "eval": "--workers", "suite": "--variant"}


@pytest.mark.parametrize("stage", ["augment", "train", "eval", "suite", "corrupt"])
def test_bench_stages_share_their_common_flags_and_refuse_others(stage) -> None:
    from robench.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["bench", stage, "--images", "8", "--seed", "3", "--csv", "x.csv"])
    assert (args.stage, args.images, args.seed, args.csv) == (stage, 8, 3, "x.csv")
    with pytest.raises(SystemExit):  # a flag of another stage
        parser.parse_args(["bench", stage, REFUSED.get(stage, "--model"), "x"])


def test_a_table_written_to_a_log_keeps_each_row_on_one_line(capsys) -> None:
    """Wrapped column blocks are for terminals; a CI log gets one line per row."""
    from robench.cli import _print_table

    cells = {f"column_{i}": [f"value {i} of row {r}" for r in range(3)] for i in range(9)}
    _print_table(pd.DataFrame(cells))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and "column_0" in lines[0] and "column_8" in lines[0]
    assert all(line.rstrip().endswith(f"value 8 of row {r}") for r, line in enumerate(lines[1:]))
