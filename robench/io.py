"""Atomic file writes, hashing and environment capture.

Every result, cache and checkpoint goes through :func:`atomic_write`: it is written to a
temporary file beside its destination and renamed over it, so a crash never leaves a half-written
file under the final name.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import platform
import select
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no flock; runs and caches go unguarded, as on a lockless mount
    fcntl = None  # type: ignore[assignment]

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temp file beside ``path`` to fill; renamed onto ``path`` only if the block succeeds.

    For writers that need a file name (e.g. ``numpy.lib.format.open_memmap``); the caller makes
    its data durable (flush, fsync) before the block ends.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)  # left by a writer that was killed (one writer per target)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        tmp.chmod(0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; rename it onto ``path`` only if the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def hash_arrays(*arrays: np.ndarray) -> str:
    """A short, stable content hash (sha256, 16 hex digits) of arrays' shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:16]


def hash_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hash_file(path: str | os.PathLike[str]) -> str:
    """sha256 (16 hex digits) of a file's bytes, read in chunks (checkpoints can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()[:16]


PACKAGES = ("robench", "torch", "torchvision", "timm", "numpy", "pandas", "scikit-learn", "pillow")


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide the numbers, plus Python and the machine."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda_device"] = torch.cuda.get_device_name()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return info


def cache_dir() -> Path:
    """Where generated data (mixing sets, corrupted test sets, OOD sets) is cached.

    ``ROBENCH_CACHE`` if set, else ``results/cache`` under the current directory (git-ignored).
    """
    return Path(os.environ.get("ROBENCH_CACHE", "results/cache"))


@contextlib.contextmanager
def locked_file(path: Path, on_busy: Callable[[IO[str]], None]) -> Iterator[IO[str]]:
    """Hold an exclusive advisory lock (``flock``) on ``path``, opened for reading and appending.

    When another process holds it, ``on_busy(handle)`` is called first: it raises to refuse, or
    returns to wait for the lock. The OS releases a lock when its holder dies, so a killed
    process never leaves a stale one. Where there are no locks (a file system that refuses
    ``flock``, ENOLCK/EOPNOTSUPP on some network mounts, or no ``fcntl`` at all) the block runs
    unguarded: every file robench writes is written atomically anyway.
    """
    with open(path, "a+") as handle:
        locked = fcntl is not None
        if locked:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                on_busy(handle)
                fcntl.flock(handle, fcntl.LOCK_EX)
            except OSError:
                locked = False
        try:
            yield handle
        finally:
            if locked:
                fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def cache_lock(entry: Path, waiting: str = "") -> Iterator[None]:
    """Hold ``<entry>/.lock`` while checking and filling the cache folder ``entry``: processes
    that want the same entry (torchrun ranks, parallel sweep runs) wait here and then find it
    made, instead of all making it at once. Prints ``waiting`` (if any) when another process
    holds it."""
    entry.mkdir(parents=True, exist_ok=True)

    def wait(_: IO[str]) -> None:
        if waiting:
            print(waiting, file=sys.stderr)

    with locked_file(entry / ".lock", wait):
        yield


def exit_with(pid: int) -> None:
    """In a pool worker: exit as soon as process ``pid`` (the robench process that started the
    pool) ends, so a killed robench leaves no workers behind. The parent-death signal is not
    enough: a fork server's workers are its children, not robench's, and the fork server lives
    as long as they do. A daemon thread waits on ``pid`` (a pidfd on Linux, else polling)."""

    def watch() -> None:
        try:
            handle = os.pidfd_open(pid)
        except (AttributeError, OSError):  # not Linux, or an old kernel
            while _running(pid):
                time.sleep(1.0)
        else:
            select.select([handle], [], [])  # readable once the process has ended
        os._exit(1)

    threading.Thread(target=watch, name=f"exit-with-{pid}", daemon=True).start()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed derived from a tuple of ints/strings, stable across processes and platforms."""
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1
