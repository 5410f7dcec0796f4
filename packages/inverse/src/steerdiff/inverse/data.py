"""Data sets of an inverse problem: training fields for the prior, test fields and their measurements.

A data set folder holds ``data.safetensors`` (tensors ``train`` (N, 1, H, W), ``test`` (M, 1, H, W) and ``y``
(M, *observation shape)) and ``problem.json`` (the problem's name and options, the seed and the field
statistics; written last, so a folder with ``problem.json`` is complete). ``load_dataset`` checks every
shape against the problem before anything is trained or solved.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from steerdiff.core.io import atomic_path, write_json

from .problems import InverseProblem, make_problem

__all__ = [
    "DATA_FILE",
    "PROBLEM_FILE",
    "Dataset",
    "DatasetError",
    "load_dataset",
    "load_tensors",
    "make_dataset",
    "save_dataset",
    "save_tensors",
]

DATA_FILE, PROBLEM_FILE = "data.safetensors", "problem.json"


class DatasetError(ValueError):
    """A data set folder is missing, incomplete, corrupt or does not fit its problem."""


@dataclass
class Dataset:
    problem: InverseProblem
    train: torch.Tensor  # (N, 1, H, W) fields for the prior
    test: torch.Tensor  # (M, 1, H, W) ground-truth fields
    y: torch.Tensor  # (M, *observation shape) their noisy measurements
    meta: dict = field(default_factory=dict)


def save_tensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """A safetensors file, written atomically."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
    return Path(path)


def load_tensors(path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a missing or corrupt file is a :class:`DatasetError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} is missing; give a folder written by `steerdiff-inverse make-data`")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise DatasetError(
            f"{path} is corrupt or truncated ({err}); create the data set again with "
            "`steerdiff-inverse make-data`"
        ) from None


def make_dataset(
    problem: InverseProblem, num_train: int, num_test: int, seed: int = 0, progress: bool = False
) -> Dataset:
    """Simulate ``num_train`` training fields, ``num_test`` test fields and the test fields' measurements."""
    if num_train < 1 or num_test < 1:
        raise ValueError(f"num_train and num_test must be positive, got {num_train} and {num_test}")
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    train = problem.sample_fields(num_train, g, progress=progress)
    test = problem.sample_fields(num_test, g)
    y = problem.forward.measure(test, g)
    meta = {
        "problem": problem.name,
        "options": problem.config(),
        "seed": seed,
        "num_train": num_train,
        "num_test": num_test,
        "field_std": float(train.std()),
        "field_max": float(train.abs().max()),
        "seconds": time.perf_counter() - t0,
    }
    return Dataset(problem, train, test, y, meta)


def save_dataset(folder, dataset: Dataset) -> Path:
    """Write ``data.safetensors``, then ``problem.json`` (the completion mark), into ``folder``."""
    folder = Path(folder)
    _check(dataset, folder)
    save_tensors(folder / DATA_FILE, {"train": dataset.train, "test": dataset.test, "y": dataset.y})
    write_json(folder / PROBLEM_FILE, dataset.meta)
    return folder


def load_dataset(folder) -> Dataset:
    """Read and check a data set folder written by :func:`save_dataset`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(
            f"data folder {folder} does not exist; create one with `steerdiff-inverse make-data --out DIR`"
        )
    meta_path = folder / PROBLEM_FILE
    if not meta_path.is_file():
        raise DatasetError(
            f"{folder} holds no data set ({PROBLEM_FILE} is missing); create one with "
            "`steerdiff-inverse make-data --out DIR`"
        )
    try:
        meta = json.loads(meta_path.read_text())
        problem = make_problem(meta["problem"], **meta["options"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise DatasetError(
            f"{meta_path} is corrupt ({type(err).__name__}: {err}); create the data set again "
            "with `steerdiff-inverse make-data`"
        ) from None
    except ValueError as err:
        raise DatasetError(
            f"{meta_path} describes no valid problem ({err}); create the data set again with "
            "`steerdiff-inverse make-data`"
        ) from None
    tensors = load_tensors(folder / DATA_FILE)
    missing = {"train", "test", "y"} - set(tensors)
    if missing:
        raise DatasetError(
            f"{folder / DATA_FILE} lacks the tensors {sorted(missing)}; create the data set "
            "again with `steerdiff-inverse make-data`"
        )
    dataset = Dataset(problem, tensors["train"], tensors["test"], tensors["y"], meta)
    _check(dataset, folder)
    return dataset


def _check(dataset: Dataset, folder: Path) -> None:
    problem = dataset.problem
    want = (1, *problem.field_shape)
    for name in ("train", "test"):
        t = getattr(dataset, name)
        if t.ndim != 4 or tuple(t.shape[1:]) != want:
            raise DatasetError(
                f"{folder}: the {name} fields have shape {tuple(t.shape)}, but the {problem.name} "
                f"problem it records needs (N, {', '.join(map(str, want))}); create the data set "
                "again with `steerdiff-inverse make-data`"
            )
    obs = problem.forward.output_shape
    if tuple(dataset.y.shape) != (dataset.test.shape[0], *obs):
        raise DatasetError(
            f"{folder}: the measurements have shape {tuple(dataset.y.shape)}, but "
            f"{dataset.test.shape[0]} test fields of the {problem.name} problem give "
            f"({dataset.test.shape[0]}, {', '.join(map(str, obs))}); create the data set again "
            "with `steerdiff-inverse make-data`"
        )
    for name in ("train", "test", "y"):
        if not torch.isfinite(getattr(dataset, name)).all():
            raise DatasetError(f"{folder}: the {name} tensor contains NaN or inf; create the data set again")
