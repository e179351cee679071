"""Every class of bad input ends in one clear line, exit status 2, no traceback, nothing written."""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robench.cli import main
from robench.errors import DataError, one_line

REPO = Path(__file__).resolve().parents[2]


def _robench(*args: str) -> subprocess.CompletedProcess:
    """``robench ARGS`` in this process (as fast as a function call, same output and status)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse errors and --help
            code = exit_.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_the_real_entry_point_prints_one_line_too(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "robench.cli", "train", "--epochs", "x"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    _assert_one_line_error(proc, "invalid int value: 'x'")


def _assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("robench: error: ") and "\n" not in err, err
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in err, err


def _no_results(results: Path) -> None:
    assert not list(results.glob("runs/*/metrics.json")), "a failed run left results behind"
    assert not list(results.glob("runs/*/checkpoint.pt"))


TINY = ["--epochs", "1", "--quiet", "--set", "train.batch_size=8"]

CONFIG_CASES = {
    "unknown key": ("[train]\nepoch = 3\n", "unknown config key 'train.epoch'"),
    "wrong type": ("[train]\nlr = 'fast'\n", "'train.lr' must be a number"),
    "out of range": ("[train]\nmomentum = 2\n", "'train.momentum' must be <= 1.0"),
    "unknown method": ('[augment]\nmethod = "ipmx"\n', "did you mean 'ipmix'"),
    "unknown model": ('[model]\nname = "wrn_40_22"\n', "unknown model 'wrn_40_22'"),
    "unknown metric": ('[evaluate]\nmetrics = ["clen"]\n', "did you mean 'clean'"),
    "bad plugin option": ("[augment]\nmethod = 'ipmix'\noptions = {k = 'three'}\n", "ipmix"),
    "malformed TOML": ("[train\n", "is not valid TOML"),
    "zero learning rate": ("[train]\nlr = 0\n", "'train.lr' must be > 0.0"),
    "lr_min above lr": ("[train]\nlr = 0.01\nlr_min = 0.1\n", "lr_min (0.1) is above train.lr"),
    "NaN crop_pct": ("crop_pct = nan\n", "'data.crop_pct' must be a finite number"),
    "metric option of the wrong kind": (
        '[evaluate]\nmetrics = ["pgd"]\noptions = {pgd = {steps = "x"}}\n',
        "evaluate.options.pgd.steps must be an integer, got 'x'",
    ),
    "metric option out of range": (
        '[evaluate]\nmetrics = ["pgd"]\noptions = {pgd = {steps = -5}}\n',
        "pgd needs eps, step_size, steps, n >= 0",
    ),
}


@pytest.mark.fault("bad configs (13 kinds)", "one line naming the key or name; nothing written")
@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config(case, tiny_npz, tmp_path) -> None:
    text, needle = CONFIG_CASES[case]
    config = tmp_path / "bad.toml"
    config.write_text(f'[data]\ndataset = "npz:{tiny_npz}"\n' + text.replace("[data]\n", ""))
    proc = _robench("train", str(config), "--results-dir", str(tmp_path / "r"), *TINY)
    _assert_one_line_error(proc, needle)
    _no_results(tmp_path / "r")


def _folder(root: Path, classes: dict[str, list[tuple[int, int]]]) -> Path:
    for name, sizes in classes.items():
        (root / name).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            Image.fromarray(np.full((h, w, 3), 9 * i, np.uint8)).save(root / name / f"{i}.png")
    return root


def _data_case(case: str, tmp: Path) -> tuple[str, str]:
    """(dataset spec, expected text) for one kind of bad data."""
    if case == "wrong image shape":
        np.savez(tmp / "d.npz", x=np.zeros((4, 32, 32), np.uint8), y=np.zeros(4, np.int64))
        return f"npz:{tmp / 'd.npz'}", "d.npz"
    if case == "labels out of range":
        np.savez(
            tmp / "d.npz", x=np.zeros((4, 32, 32, 3), np.uint8), y=np.array([0, 1, 2, -1]),
        )  # fmt: skip
        return f"npz:{tmp / 'd.npz'}", "label"
    if case == "empty folder":
        (tmp / "empty" / "train").mkdir(parents=True)
        (tmp / "empty" / "test").mkdir(parents=True)
        return f"imagefolder:{tmp / 'empty'}", "empty"
    if case == "class mismatch between splits":
        _folder(tmp / "m" / "train", {"cat": [(32, 32)] * 2, "dog": [(32, 32)] * 2})
        _folder(tmp / "m" / "test", {"cat": [(32, 32)] * 2, "fox": [(32, 32)] * 2})
        return f"imagefolder:{tmp / 'm'}", "fox"
    if case == "mixed image sizes":
        _folder(tmp / "s", {"cat": [(32, 32), (30, 32)], "dog": [(32, 32)]})
        return f"imagefolder:{tmp / 's'}", "30"
    if case == "corrupt image file":
        _folder(tmp / "c", {"cat": [(32, 32)] * 2, "dog": [(32, 32)] * 2})
        (tmp / "c" / "dog" / "bad.png").write_bytes(b"\x89PNG broken")
        return f"imagefolder:{tmp / 'c'}", "bad.png"
    if case == "missing data root":
        return "cifar10", "cifar-10-batches-py"
    if case == "symlink loop in a class folder":
        _folder(tmp / "l", {"cat": [(32, 32)] * 2, "dog": [(32, 32)] * 2})
        (tmp / "l" / "cat" / "loop").symlink_to("..")  # would label every dog as a cat, forever
        return f"imagefolder:{tmp / 'l'}", "cat/loop leads back to"
    if case == "link into another class folder":
        _folder(tmp / "x", {"cat": [(32, 32)] * 2, "dog": [(32, 32)] * 2})
        (tmp / "x" / "cat" / "more").symlink_to(tmp / "x" / "dog")
        return f"imagefolder:{tmp / 'x'}", "cat/more leads back to"
    raise AssertionError(case)


DATA_CASES = [
    "wrong image shape",
    "labels out of range",
    "empty folder",
    "class mismatch between splits",
    "mixed image sizes",
    "corrupt image file",
    "missing data root",
    "symlink loop in a class folder",
    "link into another class folder",
]


@pytest.mark.fault("bad data (9 kinds)", "one line naming the file or problem; nothing written")
@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data(case, tmp_path) -> None:
    spec, needle = _data_case(case, tmp_path)
    args = ["train", "--dataset", spec, "--results-dir", str(tmp_path / "r"), *TINY]
    proc = _robench(*args, "--data-root", str(tmp_path / "nowhere"))
    _assert_one_line_error(proc, needle)
    _no_results(tmp_path / "r")


def test_bad_file_decoded_in_a_dataloader_worker(tmp_path) -> None:
    """A streamed folder (``data.image_size``) is decoded in the DataLoader workers; torch
    re-raises a worker's error with the worker's traceback as its message: still one line."""
    for split in ("train", "test"):
        _folder(tmp_path / "f" / split, {"cat": [(40, 40)] * 2, "dog": [(40, 40)] * 2})
    (tmp_path / "f" / "train" / "dog" / "bad.png").write_bytes(b"\x89PNG broken")
    args = ["train", "--dataset", f"imagefolder:{tmp_path / 'f'}", *TINY]
    workers = ["--set", "data.image_size=32", "--set", "train.workers=1"]
    proc = _robench(*args, *workers, "--results-dir", str(tmp_path / "r"))
    _assert_one_line_error(proc, "cannot decode image", "bad.png")
    _no_results(tmp_path / "r")


def test_one_line_takes_the_message_out_of_a_worker_traceback() -> None:
    """What torch's DataLoader does with an exception raised in a worker process."""
    from torch._utils import ExceptionWrapper

    try:
        raise DataError("cannot decode image x.png: broken")
    except DataError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 3")
    with pytest.raises(DataError) as caught:
        wrapped.reraise()
    assert "\n" in str(caught.value)  # what the CLI printed before
    assert one_line(caught.value) == "cannot decode image x.png: broken"
    assert one_line(DataError("a b")) == "a b"
    assert one_line(DataError("a\nb")) == "a b"  # a stray line break never splits the line


CLI_CASES = {
    "unknown command": (["trian"], "invalid choice: 'trian'"),
    "bad integer": (["train", "--epochs", "many"], "invalid int value: 'many'"),
    "unknown flag": (["train", "--epochz", "3"], "unrecognized arguments: --epochz"),
    "bad override": (["train", "--set", "train.epochs"], "must look like key=value"),
    "not a run folder": (["evaluate", "/nonexistent/run"], "is not a run folder"),
    "missing claims file": (["check", "/nonexistent/claims.toml"], "claims.toml"),
    "a device robench does not run on": (["train", "--device", "tpu"], "device 'tpu' is not one"),
    "an empty metric list": (["evaluate", "/nonexistent/run", "--metrics", ","], "names nothing"),
    "a run name too long for a folder": (["train", "--set", f"name={'n' * 300}"], "1 to 64"),
    "a newline in the run name": (["train", "--set", 'name="a\\nb"'], "control character"),
}


@pytest.mark.fault("bad command-line arguments (10 kinds)", "one line, exit status 2")
@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_bad_cli_arguments(case) -> None:
    args, needle = CLI_CASES[case]
    _assert_one_line_error(_robench(*args), needle)


@pytest.fixture
def trained_run(tiny_npz, tmp_path) -> Path:
    results = tmp_path / "results"
    args = ["train", "--dataset", f"npz:{tiny_npz}", "--results-dir", str(results), *TINY]
    assert _robench(*args, "--set", 'evaluate.metrics=["clean"]').returncode == 0
    (run,) = (results / "runs").iterdir()
    return run


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _pickle_payload(path: Path) -> None:
    torch.save({"model": argparse.Namespace(run="me")}, path)  # any non-tensor object


def _garbage(path: Path) -> None:
    path.write_bytes(b"definitely not a checkpoint")


@pytest.mark.fault(
    "damaged checkpoints (truncated, pickle payload, garbage)",
    "evaluate refuses it with one line; metrics.json untouched",
)
@pytest.mark.parametrize("damage", [_truncate, _pickle_payload, _garbage])
def test_damaged_checkpoint(damage, trained_run) -> None:
    before = (trained_run / "metrics.json").read_text()
    damage(trained_run / "checkpoint.pt")
    _assert_one_line_error(_robench("evaluate", str(trained_run), "--metrics", "clean", "--quiet"))
    assert (trained_run / "metrics.json").read_text() == before


@pytest.mark.fault(
    "config path that tries to escape the results directory (name = '../../x')",
    "the run folder stays inside results_dir",
)
def test_run_names_cannot_escape_the_results_dir(tiny_npz, tmp_path) -> None:
    results = tmp_path / "results"
    args = ["train", "--dataset", f"npz:{tiny_npz}", "--results-dir", str(results), *TINY]
    proc = _robench(*args, "--set", 'name="../../escape"', "--set", 'evaluate.metrics=["clean"]')
    assert proc.returncode == 0, proc.stderr
    (run,) = (results / "runs").iterdir()
    assert run.resolve().parent == (results / "runs").resolve()
    assert not list(tmp_path.glob("escape*")) and not list(tmp_path.parent.glob("escape*"))


@pytest.mark.fault(
    "truncated or wrong-shape CIFAR-C file given as the corruption source",
    "one line naming the file",
)
@pytest.mark.parametrize("kind", ["truncated", "wrong shape"])
def test_bad_official_corruption_files(kind, trained_run, tmp_path) -> None:
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    np.save(folder / "labels.npy", np.tile(np.arange(24) % 4, 5).astype(np.uint8))
    if kind == "truncated":
        np.save(folder / "fog.npy", np.zeros((5 * 24, 32, 32, 3), np.uint8))
        _truncate(folder / "fog.npy")
    else:
        np.save(folder / "fog.npy", np.zeros((5 * 24, 16, 16, 3), np.uint8))
    proc = _robench(
        "evaluate", str(trained_run), "--metrics", "corruption", "--quiet",
        "--option", f'corruption.source="{folder}"', "--option", 'corruption.corruptions=["fog"]',
    )  # fmt: skip
    _assert_one_line_error(proc, "fog.npy")


@pytest.mark.fault(
    "strings with backslashes, quotes and unicode in --results-dir and the config",
    "kept as typed: written to config.toml and read back unchanged",
)
def test_strings_are_kept_as_typed(tmp_path) -> None:
    from robench.cli import _overrides, build_parser
    from robench.config import load_config, to_toml

    weird = str(tmp_path / "a\\tb" / 'q"uo\\te' / "üñí")
    args = build_parser().parse_args(["train", "--results-dir", weird, "--method", "ipmix"])
    cfg = load_config(None, _overrides(args))
    assert cfg.results_dir == weird
    saved = tmp_path / "config.toml"
    saved.write_text(to_toml(cfg))
    assert load_config(saved).results_dir == weird


@pytest.mark.fault(
    "a model whose weights are NaN (a diverged run's checkpoint)",
    "evaluation refuses it with one line instead of saving NaN results",
)
def test_nan_weights_are_not_evaluated(tiny_npz, tmp_path) -> None:
    import robench
    from robench.errors import ConfigError

    data = robench.load_dataset(f"npz:{tiny_npz}", "test")
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 4))
    model = robench.Normalized(net, mean=(0.5,) * 3, std=(0.5,) * 3)
    with torch.no_grad():
        model.model[1].weight[0, 0] = float("nan")
    with pytest.raises(ConfigError, match="NaN/inf weights in 1 tensors"):
        robench.evaluate(model, data, ["clean"], save_to=tmp_path / "results", label="nan")
    assert not list((tmp_path / "results").glob("runs/*/metrics.json"))


def _tensor_state(path: Path) -> None:
    torch.save(torch.zeros(3), path)  # loads with weights_only, but is no robench checkpoint


@pytest.mark.fault(
    "a checkpoint whose content is a bare tensor", "evaluate refuses it with one line"
)
def test_checkpoint_that_is_a_tensor(trained_run) -> None:
    _tensor_state(trained_run / "checkpoint.pt")
    proc = _robench("evaluate", str(trained_run), "--metrics", "clean", "--quiet")
    _assert_one_line_error(proc, "is not one robench wrote")


METRICS_EDITS = {
    "a string": (lambda doc: "oops", "schema version 'str'"),
    "null": (lambda doc: None, "schema version 'NoneType'"),
    "no data": (lambda doc: {k: v for k, v in doc.items() if k != "data"}, "'data' is missing"),
    "a negative error": (
        lambda doc: doc | {"metrics": {"clean": {"clean_error": -42.0}}},
        "clean.clean_error = -42.0 is a percentage outside [0, 100]",
    ),
    "a NaN value": (
        lambda doc: doc | {"metrics": {"clean": {"clean_error": float("nan")}}},
        "clean.clean_error = nan is not a finite number",
    ),
}


@pytest.mark.fault(
    "metrics.json edited by hand (a string, null, no data, -42 %, NaN)",
    "report and check refuse it with one line naming the file and value",
)
def test_hand_edited_metrics(trained_run, tmp_path) -> None:
    import json

    path = trained_run / "metrics.json"
    doc = json.loads(path.read_text())
    results = trained_run.parent.parent
    claims = tmp_path / "claims.toml"
    claims.write_text(
        '[defaults.recipe]\nconfig = "run"\nmodel = "wrn_16_2"\ndataset = "npz:tiny"\n'
        'epochs = 1\n[[claim]]\ncheck = "baseline.clean_error < 100"\n'
    )
    for case, (edit, needle) in METRICS_EDITS.items():
        path.write_text(json.dumps(edit(doc)))
        for args in (["report", "--no-plots"], ["check", str(claims)]):
            proc = _robench(*args, "--results-dir", str(results))
            assert "Traceback" not in proc.stderr, case
            _assert_one_line_error(proc, str(path), needle)


@pytest.mark.fault(
    "a truncated records.npz", "check and evaluate refuse it with one line naming the file"
)
def test_truncated_records(trained_run, tmp_path) -> None:
    import json

    model = json.loads((trained_run / "metrics.json").read_text())["config"]["model"]["name"]
    _truncate(trained_run / "records.npz")
    results = trained_run.parent.parent
    claims = tmp_path / "claims.toml"
    claims.write_text(
        f'[defaults.recipe]\nconfig = "run"\nmodel = "{model}"\ndataset = "npz:tiny"\n'
        'epochs = 1\n[[claim]]\ncheck = "baseline.clean_error < 100"\n'
    )
    proc = _robench("check", str(claims), "--results-dir", str(results))
    _assert_one_line_error(proc, "records.npz is damaged")
    proc = _robench("evaluate", str(trained_run), "--metrics", "clean", "--quiet")
    _assert_one_line_error(proc, "records.npz is damaged", "delete it")


@pytest.mark.fault(
    "a file where the results folder should be", "one line naming the path; nothing written"
)
def test_a_file_in_place_of_the_results_folder(tiny_npz, tmp_path) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    args = ["train", "--dataset", f"npz:{tiny_npz}", "--results-dir", str(blocker), *TINY]
    _assert_one_line_error(_robench(*args), "cannot write or read", str(blocker))
    _assert_one_line_error(_robench("report", "--results-dir", str(blocker)), str(blocker))
    assert blocker.read_text() == "not a folder"


@pytest.mark.fault(
    "a temporary file left by a killed writer", "removed by the next write of the same file"
)
def test_stale_temporary_files_are_removed(tmp_path) -> None:
    from robench.io import write_text

    stale = tmp_path / ".checkpoint.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".metrics.json.x.tmp"  # another file's: not ours to remove
    other.write_text("{")
    write_text(tmp_path / "checkpoint.pt", "whole")
    assert not stale.exists() and other.exists()
    assert [p.name for p in tmp_path.glob("*.tmp")] == [".metrics.json.x.tmp"]
    assert (tmp_path / "checkpoint.pt").read_text() == "whole"
