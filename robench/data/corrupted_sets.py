"""CIFAR-10-C / CIFAR-10-P generated in-house, in the official layout, cached by manifest.

CIFAR-10-C and -P are not always downloadable (robench's own machines are offline), so they are
generated from the clean test set. The files follow the published layout (CIFAR-10-C: Zenodo
record 2535967; CIFAR-10-P: ``make_cifar_p.py``), so the same reader serves users who have the
official files:

    <root>/CIFAR-10-C/<corruption>.npy   uint8 (S * N, H, W, 3), severity-major
    <root>/CIFAR-10-C/labels.npy         uint8 (S * N,)  (int64 if a label exceeds 255)
    <root>/CIFAR-10-P/<name>.npy         uint8 (N, T, H, W, 3)   (<name>_2.npy for difficulty 2)

plus a ``manifest.json`` (written last, so its presence means the set is complete) that records
what is needed to trust or rebuild it: constants hash, generator version, seed, source data
identity, package versions. Image i of severity s draws from its own generator,
``derive_seed(seed, corruption, severity, i)``, so any slice can be regenerated on its own and
the output does not depend on the number of workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robench.console import bar
from robench.data.corruption_constants import (
    ALL_CORRUPTIONS,
    ALL_PERTURBATIONS,
    BENCHMARK_CORRUPTIONS,
    SEVERITIES,
    TEST_PERTURBATIONS,
    get_constants,
)
from robench.data.corruptions import (
    GENERATOR_VERSION,
    check_size,
    corrupt_batch,
    corruption_seed_rngs,
)
from robench.data.datasets import ImageData
from robench.data.perturbations import FRAMES, NOISE_LEVELS, perturb_batch
from robench.errors import ConfigError, DataError
from robench.io import (
    atomic_path,
    atomic_write,
    cache_dir,
    cache_lock,
    derive_seed,
    exit_with,
    hash_arrays,
    hash_text,
    package_versions,
    write_json,
)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 2  # 2: file records carry a sha256
# Images per task sent to a worker: big enough to amortise the transfer, small enough to
# balance the workers and keep the progress bar moving.
C_TASK = 500
P_TASK = 50


# --------------------------------------------------------------------------- inputs


def _as_arrays(images: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """uint8 NHWC images, int64 labels and the source identity, from arrays or an ImageData."""
    identity: dict[str, Any] = {}
    if isinstance(images, ImageData):
        identity = images.identity.to_dict()
        if labels is None:
            labels = images.labels
        images = images.images.permute(0, 2, 3, 1)
    if isinstance(images, torch.Tensor):
        images = images.cpu().numpy()
    if isinstance(labels, torch.Tensor):
        labels = labels.cpu().numpy()
    images = np.ascontiguousarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(
            f"expected uint8 images (N, H, W, 3) or an ImageData; got {images.dtype} {images.shape}"
        )
    labels = np.zeros(len(images), np.int64) if labels is None else np.asarray(labels, np.int64)
    if labels.shape != (len(images),):
        raise DataError(f"{len(images)} images but labels of shape {labels.shape}")
    return images, labels, identity


def _subset(images: Any, labels: Any, n: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    images, labels, identity = _as_arrays(images, labels)
    if n < 0 or n > len(images):
        raise ConfigError(f"n = {n} but the source has {len(images)} images (0 means all)")
    n = n or len(images)
    images, labels = images[:n], labels[:n]
    source = {
        "identity": identity,
        "count": n,
        "image_shape": list(images.shape[1:]),
        "content_hash": hash_arrays(images, labels),  # of the images actually corrupted
    }
    return images, labels, source


def _versions() -> dict[str, str]:
    out = package_versions()
    for name in ("scipy", "opencv-python-headless", "imagecorruptions-imaug"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# --------------------------------------------------------------------------- workers


@dataclass(frozen=True)
class _Task:
    kind: str  # "c" or "p"
    name: str
    level: int  # severity (C) or difficulty (P)
    start: int
    stop: int


_SOURCE: dict[str, Any] = {}


def _init_worker(images: np.ndarray, seed: int, constants: str, parent: int) -> None:
    """Keep the source images in the worker once, instead of shipping them with every task;
    end with ``parent``, the process that made the pool."""
    import cv2

    exit_with(parent)
    cv2.setNumThreads(1)  # one process per core already
    _SOURCE.update(images=images, seed=seed, constants=constants)


@contextlib.contextmanager
def _local_source(images: np.ndarray, seed: int, constants: str) -> Iterator[None]:
    """The same state for tasks run in this process, restored afterwards."""
    saved = dict(_SOURCE)
    _SOURCE.update(images=images, seed=seed, constants=constants)
    try:
        yield
    finally:
        _SOURCE.clear()
        _SOURCE.update(saved)


def p_seed_rngs(
    seed: int, name: str, difficulty: int, indices: Iterable[int]
) -> list[np.random.Generator]:
    """One generator per image index for a CIFAR-P sequence."""
    return [
        np.random.default_rng(derive_seed(seed, "cifar-p", name, difficulty, int(i)))
        for i in indices
    ]


def _compute(task: _Task) -> np.ndarray:
    images = _SOURCE["images"][task.start : task.stop]
    seed = _SOURCE["seed"]
    indices = range(task.start, task.stop)
    if task.kind == "c":
        rngs = corruption_seed_rngs(seed, task.name, task.level, indices)
        return corrupt_batch(images, task.name, task.level, rngs, constants=_SOURCE["constants"])
    rngs = p_seed_rngs(seed, task.name, task.level, indices)
    return perturb_batch(images, task.name, rngs, difficulty=task.level)


def _pool_context() -> multiprocessing.context.BaseContext:
    """Never fork the caller itself: it may hold torch/OpenMP threads or CUDA state.

    A fork server that has imported this module once forks each worker ready to run (a spawned
    worker would re-import torch through the package, ~3 s each); spawn where there is none.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


def _run_tasks(
    tasks: Sequence[_Task],
    images: np.ndarray,
    seed: int,
    constants: str,
    workers: int | None,
    progress: bool,
    desc: str,
) -> Iterator[tuple[_Task, np.ndarray]]:
    """Results in task order: in this process when workers <= 1, else on a process pool."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    made = bar(progress=progress, total=sum(t.stop - t.start for t in tasks), desc=desc, unit="img")
    with made:
        if workers == 1:
            with _local_source(images, seed, constants):
                for task in tasks:
                    yield task, _compute(task)
                    made.update(task.stop - task.start)
            return
        with ProcessPoolExecutor(
            workers,
            mp_context=_pool_context(),
            initializer=_init_worker,
            initargs=(images, seed, constants, os.getpid()),
        ) as pool:
            results = pool.map(_compute, tasks)
            try:
                for task, out in zip(tasks, results, strict=True):
                    yield task, out
                    made.update(task.stop - task.start)
            finally:
                results.close()  # cancels the tasks not started yet if the caller stops early


@contextlib.contextmanager
def _npy_out(path: Path, shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """A uint8 .npy memory map under a temporary name, renamed onto ``path`` only when filled.

    Like :func:`robench.io.atomic_write`, but without holding a CIFAR-10-P file (~1 GB) in memory.
    """
    with atomic_path(path) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        yield arr
        arr.flush()
        del arr
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())


def _save_npy(path: Path, arr: np.ndarray) -> None:
    """Atomic ``np.save`` (for the small labels file)."""
    with atomic_write(path, "wb") as f:
        np.save(f, arr)


def _file_record(path: Path) -> dict[str, Any]:
    arr = np.load(path, mmap_mode="r")
    return {
        "shape": list(arr.shape),
        "dtype": str(arr.dtype),
        "bytes": path.stat().st_size,
        "sha256": _sha256(path),
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def _file_ok(path: Path, record: dict[str, Any]) -> bool:
    """The file exists with the recorded size and checksum (a flipped byte is caught too)."""
    return (
        path.is_file()
        and path.stat().st_size == record.get("bytes")
        and _sha256(path) == record.get("sha256")
    )


class _Progress:
    """Which files of a set are complete, so an interrupted generation continues where it was.

    ``progress.json`` (written atomically after each file) names the set's key and the finished
    files with their checksums; files of another key, or whose checksum no longer matches, are
    made again. The manifest replaces it once the set is complete.
    """

    NAME = "progress.json"

    def __init__(self, out_dir: Path, key: str) -> None:
        self.out_dir, self.key = out_dir, key
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / MANIFEST).unlink(missing_ok=True)  # the set is incomplete until rewritten
        try:
            saved = json.loads((out_dir / self.NAME).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            saved = {}
        files = saved.get("files", {}) if saved.get("key") == key else {}
        self.files: dict[str, dict[str, Any]] = {
            name: record for name, record in files.items() if _file_ok(out_dir / name, record)
        }

    def has(self, name: str) -> bool:
        return name in self.files

    def add(self, name: str) -> None:
        self.files[name] = _file_record(self.out_dir / name)
        write_json(self.out_dir / self.NAME, {"key": self.key, "files": self.files})

    def finish(self, manifest: dict[str, Any]) -> None:
        write_json(self.out_dir / MANIFEST, manifest)
        (self.out_dir / self.NAME).unlink(missing_ok=True)


# --------------------------------------------------------------------------- CIFAR-10-C


def _check_names(names: Sequence[str], allowed: Sequence[str], what: str) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in allowed]
    if unknown or not names or len(set(names)) != len(names):
        raise ConfigError(f"{what} must be distinct names from {', '.join(allowed)}; got {names}")
    return names


def _c_key_fields(
    corruptions: Sequence[str],
    severities: Sequence[int],
    seed: int,
    constants: str,
    source_hash: str,
    dataset_name: str,
) -> dict[str, Any]:
    return {
        "kind": "cifar-c",
        "generator_version": GENERATOR_VERSION,
        "constants": get_constants(constants).name,
        "constants_hash": get_constants(constants).hash(),
        "seed": seed,
        "corruptions": list(corruptions),
        "severities": list(severities),
        "source_hash": source_hash,
        "dataset_name": dataset_name,
    }


def generate_cifar_c(
    images: Any,
    labels: Any,
    out_root: str | os.PathLike[str],
    *,
    corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    n_per_severity: int = 0,
    workers: int | None = None,
    progress: bool = True,
    dataset_name: str = "CIFAR-10-C",
    constants: str = "cifar",
) -> dict[str, Any]:
    """Write ``<out_root>/<dataset_name>/`` in the official layout; return its manifest.

    ``images`` is uint8 (N, H, W, 3) or an ImageData (then ``labels`` may be None);
    ``n_per_severity`` keeps the first n images (0 = all); ``workers`` defaults to every core.
    """
    corruptions = _check_names(corruptions, ALL_CORRUPTIONS, "corruptions")
    severities = [int(s) for s in severities]
    if not severities or len(set(severities)) != len(severities) or set(severities) - {*SEVERITIES}:
        raise ConfigError(f"severities must be distinct values from 1..5; got {severities}")
    table = get_constants(constants)
    images, labels, source = _subset(images, labels, n_per_severity)
    for name in corruptions:  # before any work, not in a worker
        check_size(name, table, images.shape[1])
    n = len(images)
    out_dir = Path(out_root) / dataset_name
    key_fields = _c_key_fields(
        corruptions, severities, seed, table.name, source["content_hash"], dataset_name
    )
    done = _Progress(out_dir, hash_text(json.dumps(key_fields, sort_keys=True)))
    todo = [name for name in corruptions if not done.has(f"{name}.npy")]
    tasks = [
        _Task("c", name, sev, start, min(start + C_TASK, n))
        for name in todo
        for sev in severities
        for start in range(0, n, C_TASK)
    ]
    shape = (len(severities) * n, *images.shape[1:])
    per_file = len(tasks) // max(1, len(todo))
    results = _run_tasks(tasks, images, seed, table.name, workers, progress, dataset_name)
    with contextlib.closing(results):
        for name in todo:
            with _npy_out(out_dir / f"{name}.npy", shape) as arr:
                for _ in range(per_file):
                    task, out = next(results)
                    row = severities.index(task.level) * n + task.start
                    arr[row : row + len(out)] = out
            done.add(f"{name}.npy")

    # The official labels.npy is uint8 (make_cifar_c.py); int64 only if a label does not fit.
    label_dtype = (
        np.uint8 if labels.min(initial=0) >= 0 and labels.max(initial=0) < 256 else np.int64
    )
    _save_npy(out_dir / "labels.npy", np.tile(labels, len(severities)).astype(label_dtype))

    done.add("labels.npy")
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        **key_fields,
        "key": done.key,
        "n_per_severity": n,
        "layout": "rows = (severity index) * n_per_severity + image index",
        "source": source,
        "files": {f"{name}.npy": done.files[f"{name}.npy"] for name in [*corruptions, "labels"]},
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    done.finish(manifest)
    return manifest


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _load_npy(path: Path) -> np.ndarray:
    """Memory-map a .npy file, turning NumPy's errors on a damaged file into a DataError."""
    if not path.is_file():
        raise DataError(f"{path} does not exist; generate the set or point to the right folder")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(
            f"{path} is truncated or not a NumPy file ({err}); delete it and regenerate or "
            "re-download it"
        ) from err


def load_cifar_c(
    root: str | os.PathLike[str],
    corruption: str,
    *,
    severity: int | None = None,
    expected_labels: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (rows, H, W, 3) and int64 labels of one corruption file.

    ``root`` is the folder holding ``<corruption>.npy`` and ``labels.npy`` (an official Zenodo
    ``CIFAR-10-C`` folder or a generated one). ``severity`` selects one block of rows (all five
    when None). ``expected_labels`` (the clean test labels) checks that the rows are in test-set
    order, the assumption every evaluator makes.
    """
    root = Path(root)
    manifest = _read_manifest(root)
    severities = list(manifest["severities"]) if manifest else list(SEVERITIES)
    images = _load_npy(root / f"{corruption}.npy")
    labels = _load_npy(root / "labels.npy")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(
            f"{root / corruption}.npy should be uint8 (rows, H, W, 3); "
            f"got {images.dtype} {images.shape}"
        )
    rows = images.shape[0]
    if rows % len(severities):
        raise DataError(
            f"{root / corruption}.npy has {rows} rows, not a multiple of its "
            f"{len(severities)} severities; the file is damaged or from another set"
        )
    if labels.shape != (rows,) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{root / 'labels.npy'} should hold {rows} integer labels; "
            f"got {labels.dtype} {labels.shape}"
        )
    n = rows // len(severities)
    if severity is None:
        block = slice(0, rows)
    elif severity in severities:
        b = severities.index(severity)
        block = slice(b * n, (b + 1) * n)
    else:
        raise ConfigError(f"severity {severity!r} is not in {root} (it has {severities})")
    out_images = np.array(images[block])
    out_labels = np.array(labels[block], dtype=np.int64)
    if expected_labels is not None:
        expected = np.asarray(expected_labels, dtype=np.int64).reshape(-1)
        if len(expected) != n:
            raise DataError(
                f"{root} has {n} images per severity but {len(expected)} clean labels were given"
            )
        reps = len(out_labels) // n
        if not np.array_equal(out_labels, np.tile(expected, reps)):
            raise DataError(
                f"{root / 'labels.npy'} does not match the clean test labels: the set is in "
                "another order or from another data set"
            )
    return out_images, out_labels


def _files_ok(folder: Path, manifest: dict[str, Any]) -> bool:
    files = manifest.get("files", {})
    return bool(files) and all(_file_ok(folder / name, record) for name, record in files.items())


def ensure_cifar_c(
    images: Any,
    labels: Any = None,
    *,
    corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    n_per_severity: int = 0,
    workers: int | None = None,
    progress: bool = True,
    dataset_name: str = "CIFAR-10-C",
    constants: str = "cifar",
    cache_root: str | os.PathLike[str] | None = None,
) -> Path:
    """The folder of a generated set, from the cache when its manifest matches, else generated.

    Cached under ``cache_dir()/corruptions/<key>/<dataset_name>``, where the key hashes
    everything the files depend on (generator version, constants, seed, names, severities and
    the content of the source images).
    """
    corruptions = _check_names(corruptions, ALL_CORRUPTIONS, "corruptions")
    severities = [int(s) for s in severities]
    table = get_constants(constants)
    _, _, source = _subset(images, labels, n_per_severity)
    fields = _c_key_fields(
        corruptions, severities, seed, table.name, source["content_hash"], dataset_name
    )
    key = hash_text(json.dumps(fields, sort_keys=True))
    root = Path(cache_root) if cache_root is not None else cache_dir() / "corruptions"
    return _cached(
        root / key,
        dataset_name,
        progress,
        lambda: generate_cifar_c(
            images,
            labels,
            root / key,
            corruptions=corruptions,
            severities=severities,
            seed=seed,
            n_per_severity=n_per_severity,
            workers=workers,
            progress=progress,
            dataset_name=dataset_name,
            constants=table.name,
        ),
    )


def _cached(entry: Path, dataset_name: str, progress: bool, generate: Callable[[], Any]) -> Path:
    """``<entry>/<dataset_name>``: as cached when its manifest has the entry's key and its files
    verify, else made by ``generate``; under the entry's cache lock, so processes that want it
    at the same time make it once."""
    folder = entry / dataset_name
    waiting = f"waiting for another process to finish generating {folder}" if progress else ""
    with cache_lock(entry, waiting):
        manifest = _read_manifest(folder)
        if not (manifest and manifest.get("key") == entry.name and _files_ok(folder, manifest)):
            generate()
    return folder


# --------------------------------------------------------------------------- CIFAR-10-P


def p_file_name(name: str, difficulty: int = 1) -> str:
    """``<name>.npy``, or ``<name>_<d>.npy`` for the noise sequences' difficulties 2 and 3."""
    if difficulty not in (1, 2, 3):
        raise ConfigError(f"difficulty must be 1, 2 or 3, got {difficulty!r}")
    if difficulty != 1 and name not in NOISE_LEVELS:
        raise ConfigError(f"only {', '.join(NOISE_LEVELS)} have difficulty variants of their data")
    return f"{name}.npy" if difficulty == 1 else f"{name}_{difficulty}.npy"


def _p_key_fields(
    perturbations: Sequence[str], difficulty: int, seed: int, source_hash: str, dataset_name: str
) -> dict[str, Any]:
    return {
        "kind": "cifar-p",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "perturbations": list(perturbations),
        "difficulty": difficulty,
        "source_hash": source_hash,
        "dataset_name": dataset_name,
    }


def generate_cifar_p(
    images: Any,
    out_root: str | os.PathLike[str],
    *,
    perturbations: Sequence[str] = TEST_PERTURBATIONS,
    difficulty: int = 1,
    seed: int = 0,
    n_images: int = 0,
    workers: int | None = None,
    progress: bool = True,
    dataset_name: str = "CIFAR-10-P",
) -> dict[str, Any]:
    """Write ``<out_root>/<dataset_name>/<name>.npy`` (N, T, H, W, 3) + manifest; return it.

    ``difficulty`` 2 or 3 is allowed only for the noise sequences (their stronger noise).
    """
    perturbations = _check_names(perturbations, ALL_PERTURBATIONS, "perturbations")
    files = {name: p_file_name(name, difficulty) for name in perturbations}
    images, _, source = _subset(images, None, n_images)
    n = len(images)
    out_dir = Path(out_root) / dataset_name
    fields = _p_key_fields(perturbations, difficulty, seed, source["content_hash"], dataset_name)
    done = _Progress(out_dir, hash_text(json.dumps(fields, sort_keys=True)))
    todo = [name for name in perturbations if not done.has(files[name])]
    tasks = [
        _Task("p", name, difficulty, start, min(start + P_TASK, n))
        for name in todo
        for start in range(0, n, P_TASK)
    ]
    per_file = len(tasks) // max(1, len(todo))
    results = _run_tasks(tasks, images, seed, "cifar", workers, progress, dataset_name)
    with contextlib.closing(results):
        for name in todo:
            shape = (n, FRAMES[name], *images.shape[1:])
            with _npy_out(out_dir / files[name], shape) as arr:
                for _ in range(per_file):
                    task, out = next(results)
                    arr[task.start : task.stop] = out
            done.add(files[name])
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        **fields,
        "key": done.key,
        "n_images": n,
        "frames": {name: FRAMES[name] for name in perturbations},
        "source": source,
        "files": {files[name]: done.files[files[name]] for name in perturbations},
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    done.finish(manifest)
    return manifest


def load_cifar_p(root: str | os.PathLike[str], name: str, *, difficulty: int = 1) -> np.ndarray:
    """Sequences uint8 (N, T, H, W, 3) of one perturbation file, official or generated."""
    if name not in ALL_PERTURBATIONS:
        raise ConfigError(
            f"unknown perturbation {name!r}; choose from {', '.join(ALL_PERTURBATIONS)}"
        )
    path = Path(root) / p_file_name(name, difficulty)
    seqs = _load_npy(path)
    if seqs.dtype != np.uint8 or seqs.ndim != 5 or seqs.shape[-1] != 3:
        raise DataError(f"{path} should be uint8 (N, T, H, W, 3); got {seqs.dtype} {seqs.shape}")
    if seqs.shape[1] != FRAMES[name]:
        raise DataError(
            f"{path} has {seqs.shape[1]} frames per sequence; {name} has {FRAMES[name]}"
        )
    return np.array(seqs)


def ensure_cifar_p(
    images: Any,
    *,
    perturbations: Sequence[str] = TEST_PERTURBATIONS,
    difficulty: int = 1,
    seed: int = 0,
    n_images: int = 0,
    workers: int | None = None,
    progress: bool = True,
    dataset_name: str = "CIFAR-10-P",
    cache_root: str | os.PathLike[str] | None = None,
) -> Path:
    """Like :func:`ensure_cifar_c`, for CIFAR-10-P (cached under ``.../perturbations/<key>``)."""
    perturbations = _check_names(perturbations, ALL_PERTURBATIONS, "perturbations")
    _, _, source = _subset(images, None, n_images)
    fields = _p_key_fields(perturbations, difficulty, seed, source["content_hash"], dataset_name)
    key = hash_text(json.dumps(fields, sort_keys=True))
    root = Path(cache_root) if cache_root is not None else cache_dir() / "perturbations"
    return _cached(
        root / key,
        dataset_name,
        progress,
        lambda: generate_cifar_p(
            images,
            root / key,
            perturbations=perturbations,
            difficulty=difficulty,
            seed=seed,
            n_images=n_images,
            workers=workers,
            progress=progress,
            dataset_name=dataset_name,
        ),
    )
