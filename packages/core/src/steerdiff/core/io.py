"""Atomic output: write to a temporary file (or folder) beside the target, then rename it into place.

An interrupted write never leaves a half-written file or folder under the final name, and never destroys the
previous version. Every package writes its outputs (JSON summaries, arrays, plots, MIDI, HDF5, checkpoints and
model bundles) through these; no other module renames temporary files by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_directory",
    "atomic_open",
    "atomic_path",
    "fsync_directory",
    "fsync_file",
    "recover_directory",
    "save_figure",
    "save_npy",
    "write_json",
]


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on failure removed.

    ``suffix`` (default: ``path``'s own) keeps libraries that look at the extension (numpy, matplotlib) happy.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix
    )
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", **kwargs) -> Iterator[Any]:
    """``open`` whose result appears under ``path`` only once the ``with`` block has finished cleanly."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def write_json(path, obj, indent: int = 2) -> Path:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=indent)
    return Path(path)


def save_figure(fig, path, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically (the format follows the extension)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return Path(path)


def save_npy(path, array) -> Path:
    """``numpy.save`` atomically (never pickled)."""
    with atomic_open(path, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)
    return Path(path)


# ------------------------------------------------------------------------------------------- folders


def fsync_file(path) -> None:
    """Flush a file written by another library (safetensors, h5py) to disk before its folder is renamed."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def fsync_directory(path) -> None:
    """Flush a folder's entries to disk (a no-op where folders cannot be opened, as on Windows)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _siblings(path: Path, kind: str) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.{kind}-*"), key=lambda p: p.stat().st_mtime)


def recover_directory(path) -> None:
    """Finish or undo a folder write that was cut between its two renames, and drop leftovers of failed ones.

    Readers call it before looking at ``path``: if the process died after moving the previous version aside
    and before moving the new one in, the previous version is put back.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return
    old = _siblings(path, "old")
    if old and not path.exists():
        with contextlib.suppress(FileNotFoundError):  # another process recovered it first
            os.rename(old.pop(), path)
    for p in old:
        shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path`` as a whole.

    Files written into the folder should be flushed (``atomic_open`` or an explicit fsync); the folder itself
    is fsynced here. Until the block finishes, ``path`` keeps its previous contents; if the block raises, the
    temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(path)
    for stale in _siblings(path, "tmp"):  # left by a write that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = path.parent / f".{path.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        yield tmp
        fsync_directory(tmp)
        if path.exists():
            old = path.parent / f".{path.name}.old-{tag}"
            os.rename(path, old)
            os.rename(tmp, path)
            fsync_directory(path.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
            fsync_directory(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
