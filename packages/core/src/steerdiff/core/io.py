"""Atomic file output: write to a temporary file in the same folder, then rename over the target.

An interrupted write never leaves a half-written file under the final name, and never destroys the previous
version. Every package writes its outputs (JSON summaries, arrays, plots, MIDI, HDF5) through these.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "atomic_open", "write_json", "save_figure"]


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on failure removed.

    ``suffix`` (default: ``path``'s own) keeps libraries that look at the extension (numpy, matplotlib) happy.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix)
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
