"""``robench``: the command line over the public API. Thin: parse, call, print.

Errors a user can fix print one line (``robench: error: ...``) and exit with status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from robench.errors import Interrupted, RankError, RobenchError, one_line

if TYPE_CHECKING:  # pandas, torch and the stages load in the commands that use them
    import pandas as pd

SHORTCUTS = {  # --flag -> config key
    "epochs": "train.epochs",
    "seed": "seed",
    "method": "augment.method",
    "model": "model.name",
    "data_root": "data.root",
    "dataset": "data.dataset",
    "device": "train.device",
    "results_dir": "results_dir",
    "backend": "train.dist_backend",
}


def _toml_literal(key: str, value: object) -> str:
    from robench.config import toml_value

    return f"{key}={toml_value(value)}"


def _overrides(args: argparse.Namespace) -> list[str]:
    out = [
        _toml_literal(key, getattr(args, flag))
        for flag, key in SHORTCUTS.items()
        if getattr(args, flag, None) is not None
    ]
    return out + list(args.set or [])


def _print_table(table: pd.DataFrame) -> None:
    """A table that fits the terminal: one row as a vertical name/value list, several rows
    wrapped into blocks of columns at the terminal's width. Written to a file or a CI log, the
    rows are not wrapped: one line per row reads better there than blocks of columns."""
    import pandas as pd

    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    if len(table) == 1:
        row = table.iloc[0]
        names = [str(name) for name in table.columns]
        pad = max(map(len, names), default=0)
        for name, value in zip(names, row, strict=True):
            shown = f"{value:.2f}" if isinstance(value, float) else value
            print(f"{name.ljust(pad)}  {shown}")
        return
    with pd.option_context("display.max_columns", None, "display.max_colwidth", 60):
        text = table.to_string(index=False, line_width=width, float_format=lambda v: f"{v:.2f}")
    print(text)


def cmd_train(args: argparse.Namespace) -> None:
    from robench.config import load_config
    from robench.pipeline import train
    from robench.reporting.tables import gather_runs, run_summary

    cfg = load_config(args.config, _overrides(args))
    run_dir = train(
        cfg,
        resume=args.resume,
        force=args.force,
        progress=not args.quiet,
        evaluate_after=not args.no_eval,
        detect_anomaly=args.detect_anomaly,
    )
    if _rank() == 0:  # under torchrun, rank 0 speaks for all
        print(f"run folder: {run_dir}")
        _print_table(run_summary(gather_runs(cfg.results_dir), run_dir.name))


def _rank() -> int:
    """The torchrun rank of this process (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def _named_options(texts: list[str] | None) -> dict[str, dict[str, object]]:
    """``--option name.key=value`` (metric or method options) as ``{name: {key: value}}``."""
    from robench.config import parse_override

    options: dict[str, dict[str, object]] = {}
    for text in texts or []:
        (metric, *rest), value = parse_override(text)
        if not rest:
            raise RobenchError(f"--option {text!r} must look like metric.key=value")
        options.setdefault(metric, {})[".".join(rest)] = value
    return options


#: the ``evaluate`` flags that describe a model trained elsewhere (``--model``)
_EXTERNAL_FLAGS = (
    "checkpoint",
    "pretrained",
    "dataset",
    "per_class",
    "num_classes",
    "mean",
    "std",
    "no_normalize",
    "label",
)


def cmd_evaluate(args: argparse.Namespace) -> None:
    if args.model is not None:
        if args.run is not None:
            raise RobenchError(f"give a run folder or --model, not both (got {args.run!r})")
        _evaluate_model(args)
        return
    given = [f"--{flag.replace('_', '-')}" for flag in _EXTERNAL_FLAGS if getattr(args, flag)]
    if given:
        raise RobenchError(
            f"{' and '.join(given)} describe a model trained elsewhere: add --model NAME, or "
            "drop them to evaluate a run folder"
        )
    if args.run is None:
        raise RobenchError(
            "nothing to evaluate: give a run folder (results/runs/<run-id>), or a model trained "
            "elsewhere with --model NAME --checkpoint FILE (or --pretrained) --dataset SPEC"
        )
    from robench.pipeline import evaluate_run

    metrics = _csv_list(args.metrics, "--metrics")
    doc = evaluate_run(
        Path(args.run),
        metrics,
        options=_named_options(args.option),
        progress=not args.quiet,
        device=args.device,
        forward=args.forward,
    )
    rows = [
        {"metric": metric, "value": name, "number": value}
        for metric, values in doc["metrics"].items()
        for name, value in values.items()
    ]
    if _rank() == 0:
        import pandas as pd

        _print_table(pd.DataFrame(rows))


def _evaluate_model(args: argparse.Namespace) -> None:
    """``robench evaluate --model ...``: a model trained elsewhere, saved as an external run."""
    from robench.data import load_dataset
    from robench.evaluation import DEFAULT_METRICS, check_metrics
    from robench.models.external import ROBUSTBENCH, load_model
    from robench.pipeline import eval_context, evaluate_external
    from robench.reporting.tables import gather_runs, run_summary

    if not args.dataset:
        raise RobenchError("--model needs --dataset, the test set (e.g. cifar10 or npz:PATH)")
    metrics = _csv_list(args.metrics, "--metrics") or list(DEFAULT_METRICS)
    options = _named_options(args.option)
    check_metrics(metrics, options)  # before the data is decoded and the model loaded
    data = load_dataset(
        args.dataset, "test", root=args.data_root, per_class=args.per_class, progress=not args.quiet
    )
    num_classes = args.num_classes
    if num_classes is None and args.model.startswith(ROBUSTBENCH):
        num_classes = data.num_classes  # which of RobustBench's leaderboards
    model = load_model(
        args.model,
        checkpoint=args.checkpoint,
        pretrained=args.pretrained or False,
        num_classes=num_classes,
        mean=_channel_values("--mean", args.mean),
        std=_channel_values("--std", args.std),
        normalize=not args.no_normalize,
        model_dir=args.model_dir,
    )
    ctx = eval_context(
        args.device or "auto",
        seed=args.seed,
        batch_size=args.batch_size,
        progress=not args.quiet,
        data_root=args.data_root,
        forward=args.forward or "auto",
    )
    run_dir = evaluate_external(
        model,
        data,
        metrics,
        results_dir=args.results_dir,
        label=args.label,
        options=options,
        ctx=ctx,
    )
    print(f"run folder: {run_dir}")
    _print_table(run_summary(gather_runs(args.results_dir), run_dir.name))


def _channel_values(flag: str, text: str | None) -> tuple[float, ...] | None:
    """``--mean 0.5,0.5,0.5`` -> (0.5, 0.5, 0.5)."""
    if text is None:
        return None
    try:
        return tuple(float(v) for v in _words(text))
    except ValueError:
        raise RobenchError(
            f"{flag} takes 3 numbers, e.g. {flag} 0.5,0.5,0.5; got {text!r}"
        ) from None


def cmd_sweep(args: argparse.Namespace) -> None:
    from robench.config import load_config
    from robench.sweep import failure_error, gpu_slots, plan, run_sweep, shell_line

    base = load_config(args.config, [*(args.set or []), *_slurm_overrides(args)])
    methods = _words(args.methods) or [base.augment.method]
    seeds = [_int_arg("--seeds", s) for s in _words(args.seeds)] or [base.seed]
    if args.nproc_per_node < 1 or args.parallel < 1:
        raise RobenchError("--nproc-per-node and --parallel must be >= 1")
    on_cluster = args.executor != "local"
    results = Path(args.results_dir or base.results_dir).absolute()
    todo, done = plan(
        Path(args.config).absolute() if on_cluster else args.config,
        methods,
        seeds,
        nproc=1 if on_cluster else args.nproc_per_node,  # a job's tasks are its processes
        overrides=list(args.set or []),  # the SLURM flags are not the runs' business
        results_dir=str(results) if on_cluster else args.results_dir,
    )
    total = len(todo) + len(done)
    if args.status:
        from robench.cluster import status_lines

        in_order = sorted(todo + done, key=lambda j: (j.seed, methods.index(j.method)))
        print("\n".join(status_lines(in_order, results, base.evaluate.metrics)))
        return
    print(f"sweep: {total} runs, {len(done)} finished (skipped), {len(todo)} to run")
    if on_cluster:
        from robench.cluster import submit_sweep, wait_for_jobs

        records = submit_sweep(
            args.executor, todo, results, base.sweep.slurm, args.nproc_per_node, args.dry_run
        )
        if args.wait and not args.dry_run:
            wait_for_jobs(records, results, base.evaluate.metrics, total)
        elif records:
            print(f"sweep: {len(records)} jobs submitted; --status (same arguments) follows them")
        return
    slots = gpu_slots(_words(args.gpus), args.nproc_per_node, args.parallel)
    if args.dry_run:
        for i, job in enumerate(todo):
            print(shell_line(job, slots[i % len(slots)]))
        return
    log_dir = Path(args.results_dir or base.results_dir) / "sweep-logs"
    failed = run_sweep(todo, slots=slots, log_dir=log_dir)
    if failed:
        raise failure_error(failed, total)
    print(f"sweep: all {total} runs finished")


def _slurm_overrides(args: argparse.Namespace) -> list[str]:
    """The SLURM flags as config overrides, so that they are checked like the config's keys
    (each flag's dest is the name of its ``[sweep.slurm]`` key)."""
    import dataclasses

    from robench.config import SlurmConfig, parse_override, toml_value

    keys = [f.name for f in dataclasses.fields(SlurmConfig) if f.name != "sbatch"]
    out = [
        f"sweep.slurm.{key}={toml_value(getattr(args, key))}"
        for key in keys
        if getattr(args, key, None) is not None
    ]
    extra = {}
    for text in args.sbatch or []:
        if "=" not in text:
            raise RobenchError(
                f"--sbatch takes KEY=VALUE, e.g. --sbatch exclude=node12; got {text!r}"
            )
        path, value = parse_override(text)
        extra[".".join(path)] = value
    if extra:
        out.append(f"sweep.slurm.sbatch={toml_value(extra)}")
    return out


def _words(text: str | None) -> list[str]:
    """``"a,b c"`` -> ``["a", "b", "c"]``: lists may be comma- or space-separated."""
    return (text or "").replace(",", " ").split()


def _int_arg(flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise RobenchError(f"{flag} takes integers, got {text!r}") from None


def cmd_report(args: argparse.Namespace) -> None:
    from robench.reporting import build_report
    from robench.reporting.page import display_table
    from robench.reporting.published import PUBLISHED_CSV

    rep = build_report(
        args.results_dir,
        plots=not args.no_plots,
        published=args.published or PUBLISHED_CSV,
        mce_reference=args.mce_reference,
    )
    if rep.runs.empty:
        print(f"no finished runs under {Path(args.results_dir) / 'runs'}; train one first")
    else:
        _print_table(display_table(rep.leaderboard, ci=False))
    for what, path in rep.files.items():
        print(f"wrote {path} ({what})")
    if rep.plots:
        print(f"wrote {len(rep.plots)} plots under {Path(args.results_dir) / 'plots'} (PNG + SVG)")


def cmd_check(args: argparse.Namespace) -> int:
    from robench.reporting.claims import NOT_ENOUGH_DATA, check_claims, claims_display, failed

    table = check_claims(args.claims, args.results_dir)
    _print_table(claims_display(table))
    print(", ".join(f"{n} {status}" for status, n in table["status"].value_counts().items()))
    _save_table(table, args.csv)
    bad = failed(table, allow_missing=args.allow_missing)
    if len(bad) and (bad["status"] == NOT_ENOUGH_DATA).any():
        print(
            "NOT-ENOUGH-DATA fails the check: train the missing runs (more seeds where a claim "
            "is not significant), point --results-dir at the runs, or pass --allow-missing"
        )
    return 1 if len(bad) else 0


def cmd_export(args: argparse.Namespace) -> None:
    from robench.runs import export_runs, list_runs

    if not list_runs(args.results_dir):
        raise RobenchError(
            f"no finished runs under {Path(args.results_dir) / 'runs'}; train some first, or "
            "pass --results-dir with the folder that holds them"
        )
    exported = export_runs(args.results_dir, args.store, config=args.config)
    if not exported:
        raise RobenchError(
            f"no finished runs of config {args.config!r} under {Path(args.results_dir) / 'runs'}"
        )
    print(f"exported {len(exported)} runs to {Path(args.store) / 'runs'} (no checkpoints)")
    print(f"next: robench report --results-dir {args.store}")


def cmd_list(args: argparse.Namespace) -> None:
    """One row per method, metric, data set and CIFAR model (the first two words of a row are
    its kind and name, which scripts rely on), then any plugins left out and why. Without
    third-party plugins the rows come from the catalogue, without importing torch."""
    from robench import catalogue

    plugins = catalogue.third_party_installed()
    rows = [("kind", "name", "origin", "description")]
    rows += catalogue.collect() if plugins else catalogue.built_in()
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[3]]))
    if plugins:
        from robench.plugins import PROBLEMS

        if PROBLEMS:
            print("\nfailed plugins (left out; robench works without them):")
            for problem in PROBLEMS:
                print(f"  ! {problem}")


def _csv_list(text: str | None, flag: str = "the list") -> list[str] | None:
    """``"a,b"`` -> ``["a", "b"]``; None when not given. A list of nothing (``","``) is a
    mistake, not a request for the default."""
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise RobenchError(
            f"{flag} {text!r} names nothing; give comma-separated names, or leave it out"
        )
    return names


def _save_table(table: pd.DataFrame, path: str | None) -> None:
    if path:
        from robench.reporting.tables import write_csv

        print(f"wrote {write_csv(table, path)}")


def cmd_gallery(args: argparse.Namespace) -> None:
    from robench.augment import AUGMENTATIONS
    from robench.augment.gallery import make_gallery, make_mixing_grid
    from robench.data import load_dataset
    from robench.data.mixing import load_mixing_set

    data = load_dataset(args.dataset, "test", root=args.data_root, per_class=1, progress=False)
    images = data.images[: args.images].permute(0, 2, 3, 1).numpy()
    methods = _csv_list(args.methods, "--methods") or AUGMENTATIONS.names()
    out = make_gallery(images, methods, Path(args.out), views=args.views, seed=args.seed)
    print(f"wrote {out}")
    mixing = load_mixing_set("fractals", image_size=data.image_size)
    out = make_mixing_grid(mixing.images[: args.mixing_pictures], Path(args.mixing_out))
    print(f"wrote {out}")


def _bench_parsers(sub: argparse._SubParsersAction) -> None:
    """``robench bench STAGE``: each stage with the flags it uses, the shared ones alike."""
    bench = sub.add_parser("bench", help="throughput benchmarks (images/s) on this machine")
    stages = bench.add_subparsers(dest="stage", required=True, metavar="STAGE")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--images", type=int, default=256, help="images per measurement (256)")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--csv", help="also write the table to this CSV file")
    device = argparse.ArgumentParser(add_help=False)
    device.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", default="wrn_16_2", help="the model (wrn_16_2)")
    methods = argparse.ArgumentParser(add_help=False)
    methods.add_argument("--methods", help="comma-separated methods (default: all registered)")

    def stage(name: str, text: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p = stages.add_parser(name, help=text, description=text, parents=[common, *parents])
        p.set_defaults(func=cmd_bench)
        return p

    stage("augment", "images/s of each augmentation (the batch path on --device)", device, methods)
    p = stage("train", "training steps per method against a reference step", device, model, methods)
    p.add_argument(
        "--option",
        action="append",
        metavar="METHOD.KEY=VALUE",
        help="a method option, e.g. ipmix.path=sample",
    )
    p.add_argument(
        "--variant",
        action="append",
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="[train] settings to time, each against its own reference in this "
        "process; repeat to compare (--variant batch_workers=0 --variant "
        "batch_workers=2)",
    )
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (per-sample path)")
    stage("eval", "inference images/s per batch size, as the evaluator runs it", device, model)
    p = stage("suite", "seconds of each metric of the evaluator suite", device, model)
    p.add_argument("--dataset", help="the test set, e.g. imagefolder:PATH or cifar10")
    p.add_argument("--data-root", help="where cifar10/cifar100 live")
    p.add_argument("--metrics", help="comma-separated metrics (default: all)")
    p.add_argument(
        "--option",
        action="append",
        metavar="METRIC.KEY=VALUE",
        help="a metric option, e.g. pgd.n=1000",
    )
    p.add_argument("--batch-size", type=int, default=1000, help="inference batch (1000)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p = stage("corrupt", "corruption generation: ms per image, images/s on 1 and N cores")
    p.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")


def cmd_bench(args: argparse.Namespace) -> None:
    if args.stage == "augment":
        from robench.augment import AUGMENTATIONS
        from robench.bench.augment import bench_augment

        methods = _csv_list(args.methods, "--methods") or AUGMENTATIONS.names()
        from robench.devices import resolve_device

        table = bench_augment(
            methods, n_images=args.images, seed=args.seed, device=resolve_device(args.device)
        )
    elif args.stage == "train":
        from robench.augment import AUGMENTATIONS
        from robench.bench.train import bench_train

        methods = _csv_list(args.methods, "--methods") or AUGMENTATIONS.names()
        table = bench_train(
            methods,
            model=args.model,
            n_images=args.images,
            device=args.device,
            workers=args.workers,
            options=_named_options(args.option),
            variants=[_csv_list(v, "--variant") for v in args.variant] if args.variant else [[]],
        )
    elif args.stage == "eval":
        from robench.bench.inference import bench_eval

        table = bench_eval(model=args.model, n_images=max(args.images, 1000), device=args.device)
    elif args.stage == "suite":
        table = _bench_suite(args)
    else:
        from robench.bench.corrupt import bench_corrupt

        table = bench_corrupt(args.images, workers=args.workers or None)
        projected = table.attrs.get("projected_full_set_s")
        if projected is not None:
            print(
                f"projected time for the whole CIFAR-10-C (15 x 50,000 images): {projected:.0f} s"
            )
    _print_table(table)
    _save_table(table, args.csv)


def _bench_suite(args: argparse.Namespace) -> pd.DataFrame:
    from robench.bench.suite import bench_suite
    from robench.config import ALL_METRICS
    from robench.data import load_dataset
    from robench.devices import resolve_device, use_amp
    from robench.evaluation import EvalContext
    from robench.io import cache_dir
    from robench.models import create_model

    if not args.dataset:
        raise RobenchError("bench suite needs --dataset, e.g. imagefolder:PATH or cifar10")
    data = load_dataset(args.dataset, "test", root=args.data_root, progress=not args.quiet)
    device = resolve_device(args.device)
    ctx = EvalContext(
        device=device,
        batch_size=args.batch_size,
        seed=args.seed,
        cache_dir=cache_dir(),
        progress=not args.quiet,
        amp=use_amp("auto", device),
    )
    model = create_model(args.model, data.num_classes)
    metrics = _csv_list(args.metrics, "--metrics") or list(ALL_METRICS)
    return bench_suite(model, data, metrics, ctx=ctx, options=_named_options(args.option))


def cmd_corrupt(args: argparse.Namespace) -> None:
    from robench.data import load_dataset
    from robench.data.corrupted_sets import generate_cifar_c, generate_cifar_p
    from robench.evaluation.corruption import eval_subset, resolve_constants

    data = load_dataset(args.dataset, "test", root=args.data_root, progress=not args.quiet)
    index = eval_subset(len(data), args.n, args.seed)
    images = data.images[index].permute(0, 2, 3, 1).numpy()
    name = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}.get(data.identity.name)
    name = name or data.identity.name
    common = {"seed": args.seed, "workers": args.workers or None, "progress": not args.quiet}
    if args.kind == "c":
        names = _csv_list(args.corruptions, "--corruptions")
        extra = {"corruptions": names} if names else {}
        generate_cifar_c(
            images,
            data.labels[index].numpy(),
            Path(args.out),
            dataset_name=f"{name}-C",
            constants=resolve_constants(args.constants, data.image_size),
            **extra,
            **common,
        )
        print(f"wrote {Path(args.out) / f'{name}-C'}")
    else:
        names = _csv_list(args.corruptions, "--corruptions")
        extra = {"perturbations": names} if names else {}
        generate_cifar_p(images, Path(args.out), dataset_name=f"{name}-P", **extra, **common)
        print(f"wrote {Path(args.out) / f'{name}-P'}")


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line (no usage block) and exits with status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"robench: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="robench", description="Robustness benchmarking for image classifiers.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train (then evaluate) one run from a TOML config")
    p.add_argument("config", nargs="?", help="TOML experiment config, e.g. baselines/quick.toml")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--epochs", type=int, help="= --set train.epochs=N")
    p.add_argument("--seed", type=int, help="= --set seed=N")
    p.add_argument("--method", help="augmentation method (= --set augment.method=NAME)")
    p.add_argument("--model", help="timm model name (= --set model.name=NAME)")
    p.add_argument("--dataset", help="= --set data.dataset=SPEC")
    p.add_argument("--data-root", help="where cifar10/cifar100 live (else $ROBENCH_DATA)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--backend", choices=["auto", "nccl", "gloo"], help="torchrun: = train.dist_backend"
    )
    p.add_argument("--results-dir", help="where runs/ and the leaderboard go (default results)")
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    p.add_argument("--force", action="store_true", help="discard an existing run and retrain")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    p.add_argument("--detect-anomaly", action="store_true", help="torch anomaly detection")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "sweep", help="train every (method, seed) run of a config; torchrun and GPU slots"
    )
    p.add_argument("config", help="TOML experiment config, e.g. baselines/paper_wrn40_4.toml")
    p.add_argument("--methods", help="e.g. 'baseline,ipmix' (default: the config's method)")
    p.add_argument("--seeds", help="e.g. '0,1,2' (default: the config's seed)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--results-dir", help="where runs/ go (default: the config's results_dir)")
    p.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        help="processes (GPUs) per run: torchrun when > 1; the tasks of each submitit-local job",
    )
    p.add_argument("--parallel", type=int, default=1, help="runs at once (default 1)")
    p.add_argument("--gpus", help="GPU ids to share out, e.g. 0,1,2,3 (CUDA_VISIBLE_DEVICES)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument(
        "--executor",
        choices=("local", "slurm", "submitit-local"),
        default="local",
        help="local: processes on this machine (default); slurm: one SLURM job per run via "
        "submitit, requeued on time limits ([sweep.slurm]); submitit-local: those jobs here",
    )
    p.add_argument("--status", action="store_true", help="each run's state, and its job and log")
    p.add_argument("--wait", action="store_true", help="slurm: wait until every job has ended")
    slurm = p.add_argument_group("SLURM (--executor slurm; override [sweep.slurm])")
    slurm.add_argument("--partition")
    slurm.add_argument("--account")
    slurm.add_argument("--qos")
    slurm.add_argument("--nodes", type=int, help="nodes per run")
    slurm.add_argument("--gpus-per-node", type=int, help="one training process per GPU")
    slurm.add_argument("--cpus-per-task", type=int)
    slurm.add_argument("--mem-gb", type=float)
    slurm.add_argument(
        "--time", dest="time_minutes", type=int, metavar="MINUTES", help="time limit per job"
    )
    slurm.add_argument("--constraint")
    slurm.add_argument("--array-parallelism", type=int, help="runs at once (job array %%N)")
    slurm.add_argument(
        "--sbatch", action="append", metavar="KEY=VALUE", help="any sbatch option, repeatable"
    )
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained run, or a model trained elsewhere (--model); the numbers go "
        "into a run folder",
    )
    p.add_argument("run", nargs="?", help="a run folder, e.g. results/runs/<run-id>")
    p.add_argument("--metrics", help="comma-separated metric names (default: the whole suite)")
    p.add_argument("--option", action="append", metavar="METRIC.KEY=VALUE", help="a metric option")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: the run's config)")
    p.add_argument(
        "--forward",
        choices=("auto", "eager", "captured"),
        help="inference and PGD as CUDA graphs (captured; auto: on CUDA) or eager: the same "
        "numbers (default: the run's evaluate.forward)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group(
        "a model trained elsewhere (instead of RUN; saved as a run of kind external)"
    )
    g.add_argument("--model", help="timm model name, or robustbench:[<dataset>/<threat>/]<name>")
    g.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="its weights: a state dict, {'state_dict'|'model'|'net': ...} (official AugMix, "
        "PixMix, IPMix, timm scripts), or .safetensors",
    )
    g.add_argument(
        "--pretrained",
        nargs="?",
        const=True,
        metavar="FILE",
        help="timm's pretrained weights for --model (its cache), or FILE holding them",
    )
    g.add_argument("--dataset", help="the test set: cifar10 | imagefolder:<path> | npz:<path> ...")
    g.add_argument("--data-root", help="where cifar10/cifar100 live (else $ROBENCH_DATA)")
    g.add_argument("--per-class", type=int, default=0, help="test images per class (0 = all)")
    g.add_argument("--num-classes", type=int, help="default: the checkpoint's classifier size")
    g.add_argument("--mean", help="the training Normalize's mean, e.g. 0.4914,0.4822,0.4465")
    g.add_argument("--std", help="the training Normalize's std, e.g. 0.2470,0.2435,0.2616")
    g.add_argument(
        "--no-normalize", action="store_true", help="the model takes pixels in [0, 1] as they are"
    )
    g.add_argument("--label", help="its name on the leaderboard (default: the file name or tag)")
    g.add_argument("--results-dir", default="results", help="where runs/ go (default results)")
    g.add_argument("--seed", type=int, default=0, help="seed of the metrics' random draws (0)")
    g.add_argument("--batch-size", type=int, default=500, help="inference batch (500)")
    g.add_argument(
        "--model-dir", default="models", help="robustbench: RobustBench's model folder (models)"
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="leaderboard, tables, plots and report.html from every run")
    p.add_argument("--results-dir", default="results", help="default: results")
    p.add_argument(
        "--no-plots",
        action="store_true",
        help="tables and pages only (faster; the previous report's plots are removed)",
    )
    p.add_argument("--published", help="published numbers CSV (default: baselines/published.csv)")
    p.add_argument("--mce-reference", metavar="RUN_ID", help="also normalise mCE by this run")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("check", help="check claims (TOML) against the results; exit 1 if any fail")
    p.add_argument("claims", help="claims file, e.g. baselines/claims/ipmix_paper.toml")
    p.add_argument("--results-dir", default="results", help="default: results")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="claims without enough data do not fail the check (by default they do: exit 1)",
    )
    p.add_argument("--csv", help="also write the claims table to this CSV file")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "export", help="copy finished runs without checkpoints into a results store (for git)"
    )
    p.add_argument("store", help="the store folder, e.g. baselines/reference/quick_suite")
    p.add_argument("--results-dir", default="results", help="where the runs are (results)")
    p.add_argument("--config", help="only the runs of the config with this name")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("gallery", help="PNG grids of augmented views and of the mixing set")
    p.add_argument(
        "--dataset",
        default="cifar10",
        help="cifar10 (default; under --data-root) | cifar100 | imagefolder:PATH | npz:PATH",
    )
    p.add_argument("--data-root", help="where cifar10/cifar100 live (else $ROBENCH_DATA)")
    p.add_argument("--methods", help="comma-separated methods (default: all registered)")
    p.add_argument("--images", type=int, default=4, help="test images, one per class (4)")
    p.add_argument("--views", type=int, default=4, help="augmented views per image (4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/gallery.png")
    p.add_argument("--mixing-out", default="results/mixing_set.png")
    p.add_argument("--mixing-pictures", type=int, default=40)
    p.set_defaults(func=cmd_gallery)

    p = sub.add_parser("corrupt", help="generate a CIFAR-C (or CIFAR-P) set in the official layout")
    p.add_argument(
        "--dataset",
        default="cifar10",
        help="cifar10 (default; under --data-root) | cifar100 | imagefolder:PATH | npz:PATH",
    )
    p.add_argument("--data-root", help="where cifar10/cifar100 live (else $ROBENCH_DATA)")
    p.add_argument("--out", default="results/cache/generated", help="output folder")
    p.add_argument("--kind", choices=["c", "p"], default="c", help="c: CIFAR-C, p: CIFAR-P")
    p.add_argument("--corruptions", help="comma-separated names (default: the benchmark's)")
    p.add_argument(
        "--constants",
        choices=["auto", "cifar", "tiny", "imagenet"],
        default="auto",
        help="--kind c: severity table (auto: cifar below 64 px, tiny from 64, imagenet from 224)",
    )
    p.add_argument("--n", type=int, default=0, help="test images to use (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_corrupt)

    _bench_parsers(sub)

    p = sub.add_parser(
        "list", help="list methods, metrics, data sets and CIFAR models, built-in and plugins"
    )
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except Interrupted as err:
        if _rank() == 0:
            print(f"robench: {one_line(err)}", file=sys.stderr)
        return 130
    except RobenchError as err:
        if args.debug:
            raise
        if not isinstance(err, RankError):  # rank 0 has printed it
            print(f"robench: error: {one_line(err)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (robench report | head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141  # 128 + SIGPIPE, the status of a shell tool the pipe stopped
    except OSError as err:  # a read-only or full disk, a file where a folder should be, ...
        if args.debug:
            raise
        where = f" {err.filename}" if err.filename else ""
        print(
            f"robench: error: cannot write or read{where}: {err.strerror or err}; check that "
            "the folder exists, is writable and has space, or choose another (--results-dir, "
            "ROBENCH_CACHE)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("robench: interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
