"""Black-box forward models and rewards on an executor: in-process, a process pool, or a cluster.

A simulator that takes seconds per call dominates an ensemble or candidate method. ``map_rows`` cuts a batch
into chunks of rows and evaluates them through any executor with the ``concurrent.futures`` interface
(``submit(fn, *args) -> future`` with ``future.result()``): ``None`` runs in this process, a
``ProcessPoolExecutor`` uses the local cores, and a Dask ``distributed.Client`` (or its ``get_executor()``)
or Ray's ``concurrent.futures`` adapter spreads the work over a cluster. No scheduler is written here: the
executor is the user's, and so is its life cycle.

The results come back in row order, equal to one call on the whole batch when the model treats rows
independently. Every chunk's output is checked (one row per input row, finite); a failing or non-finite
chunk raises ``ForwardModelError`` naming the rows (ensemble members, candidates) at fault, and the error
keeps every chunk that did finish in ``completed``, so nothing already computed is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["ForwardModelError", "map_rows"]


class ForwardModelError(ValueError):
    """A forward model or reward failed or returned NaN/inf; ``rows`` names the members at fault.

    ``completed`` maps the first row of each chunk that finished to its output (on the caller's device).
    """

    def __init__(self, message: str, rows: list[int], completed: dict[int, torch.Tensor]):
        super().__init__(message)
        self.rows = rows
        self.completed = completed


def _workers(executor: Any) -> int:
    """How many calls an executor runs at once: a concurrent.futures pool's workers, a Dask client's."""
    if executor is None:
        return 1
    if getattr(executor, "_max_workers", None):
        return int(executor._max_workers)
    nthreads = getattr(executor, "nthreads", None)  # distributed.Client
    if callable(nthreads):
        return max(len(nthreads()), 1)
    return 1


def _chunks(n: int, chunk_size: int | None, executor: Any) -> list[tuple[int, int]]:
    if chunk_size is None:
        chunk_size = -(-n // _workers(executor))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of rows, got {chunk_size}")
    return [(i, min(i + chunk_size, n)) for i in range(0, n, chunk_size)]


def map_rows(
    fn: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    *,
    executor: Any = None,
    chunk_size: int | None = None,
    what: str = "forward model",
) -> torch.Tensor:
    """``fn`` applied to ``x`` in chunks of rows through ``executor``; the outputs concatenated in row order.

    ``chunk_size`` (default: the rows split evenly over the executor's workers, one chunk without an
    executor) sets how many rows one call receives. Inputs are sent to the executor on the CPU and results
    come back on ``x``'s device. A chunk that raises, returns the wrong number of rows or NaN/inf raises
    ``ForwardModelError`` naming the rows.
    """
    if x.shape[0] == 0:
        raise ValueError(f"the {what} was given an empty batch; sample at least one row")
    spans = _chunks(x.shape[0], chunk_size, executor)
    if executor is None:
        futures = None
        host = x
    else:
        host = x.detach().cpu()
        futures = [executor.submit(fn, host[a:b]) for a, b in spans]
    completed: dict[int, torch.Tensor] = {}
    failure: tuple[list[int], str] | None = None
    for i, (a, b) in enumerate(spans):
        try:
            out = fn(host[a:b]) if futures is None else futures[i].result()
            out = torch.as_tensor(out).to(x.device)
        except Exception as err:  # noqa: BLE001 -- a user's simulator may raise anything; report it with rows
            if failure is None:
                failure = (
                    list(range(a, b)),
                    f"the {what} raised on rows {a}..{b - 1}: {type(err).__name__}: {err}",
                )
            continue
        if out.ndim == 0 or out.shape[0] != b - a:
            shape = tuple(out.shape)
            if failure is None:
                failure = (
                    list(range(a, b)),
                    f"the {what} returned shape {shape} for rows {a}..{b - 1}; "
                    f"it must return one output per input row ({b - a})",
                )
            continue
        bad = ~torch.isfinite(out.reshape(b - a, -1)).all(1) if out.is_floating_point() else None
        if bad is not None and bad.any():
            rows = (bad.nonzero()[:, 0] + a).tolist()
            if failure is None:
                failure = (
                    rows,
                    f"the {what} returned NaN or inf for row(s) {rows[:10]}; make it finite for "
                    "every input (clamp, or return a large penalty), or check those members' inputs",
                )
            continue
        completed[a] = out
    if failure is not None:
        rows, message = failure
        raise ForwardModelError(message, rows, completed)
    return torch.cat([completed[a] for a, _ in spans])
