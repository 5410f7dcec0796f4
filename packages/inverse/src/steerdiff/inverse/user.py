"""Your own inverse problem from files: training fields, measurements, an observation operator and a forward
model that is a Python function or an external program.

Files are NumPy ``.npy`` arrays (``numpy.save``; never pickled):

* **training fields** (for the prior): ``(N, H, W)`` or ``(N, 1, H, W)``, square grids (H = W >= 4), any real
  dtype (read as float32), every value finite;
* **measurements**: ``(M, ...)``, one row per problem instance (one measurement: ``y[None]``);
* **true fields** (optional, to score an estimate): like the training fields, one per measurement row;
* **observation operator**: a matrix ``(m, n)`` applied to each flattened forward output (or to the flattened
  field when there is no forward model: y = A x), with m the number of values in one measurement row; or a
  boolean mask of the shape of one forward output (one field), observing the entries that are True in
  row-major order.

A forward model maps a batch of fields ``(B, 1, H, W)`` to ``(B, *measurement shape)`` (before the operator,
to ``(B, ...)`` with n values per row). It is one of

* ``module:function`` — ``function(x)`` takes a float32 NumPy array ``(B, 1, H, W)`` and returns an array
  (NumPy, torch or anything ``numpy.asarray`` reads) with one row per field;
* a program — ``python sim.py`` or any command line: it is run as ``COMMAND INPUT.npy OUTPUT.npy``, reads the
  fields from ``INPUT.npy`` and saves its outputs with ``numpy.save(OUTPUT.npy, y)``; it exits with status 0
  on success (anything else is a failure, reported with the last line it wrote to stderr).

Both run through the core's :func:`~steerdiff.core.map_rows`: a batch is cut into chunks of rows
(``chunk_size``) evaluated on ``workers`` at once (threads for a program, processes for a function), and a
chunk that fails, returns the wrong number of rows or returns NaN/inf is reported with the rows (ensemble
members) at fault. A non-finite output is an error unless ``on_blowup="penalty"``, which scores those rows
with a constant penalty and counts them as blow-ups.
"""

from __future__ import annotations

import importlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from steerdiff.core.parallel import ForwardModelError, map_rows

from .forward import ForwardModel

__all__ = [
    "ProgramError",
    "UserForwardModel",
    "load_fields",
    "load_measurements",
    "load_operator",
    "make_executor",
    "program_function",
    "python_function",
]


class ProgramError(RuntimeError):
    """An external forward program failed: non-zero exit, no output file, or an unreadable one."""


# ------------------------------------------------------------------------------------------------ files


def _load_npy(path, what: str) -> np.ndarray:
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise ValueError(
            f"the {what} file {path} is not a .npy file; save the array with numpy.save('{path.stem}.npy', a)"
        )
    if not path.is_file():
        raise ValueError(f"the {what} file {path} does not exist")
    try:
        a = np.load(path, allow_pickle=False)
    except ValueError as err:  # object arrays, truncated files
        raise ValueError(
            f"{path} cannot be read as a numeric array ({err}); save a numeric array with numpy.save"
        ) from None
    except OSError as err:
        raise ValueError(f"{path} is not a readable .npy file ({err}); save it with numpy.save") from None
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
        kind = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"the {what} in {path} must be real numbers, got dtype {kind}")
    return a


def _nonfinite_rows(a: np.ndarray) -> list[int]:
    return np.flatnonzero(~np.isfinite(a.reshape(a.shape[0], -1)).all(1)).tolist()


def load_fields(path, what: str = "training fields", min_count: int = 1) -> torch.Tensor:
    """Fields ``(N, H, W)`` or ``(N, 1, H, W)`` from a ``.npy`` file as a float32 tensor ``(N, 1, H, W)``.

    Square grids (H = W >= 4) only; a file with NaN/inf, a channel axis other than one, or a single field of
    shape (H, W) is refused with the fix (nothing is dropped, transposed or broadcast)."""
    a = _load_npy(path, what)
    if a.dtype.kind == "b":
        raise ValueError(f"the {what} in {path} are booleans; fields must be numbers")
    if a.ndim == 2:
        raise ValueError(
            f"the {what} in {path} have shape {a.shape}, one field; save a stack of fields (N, H, W) "
            "(one field: a[None])"
        )
    if a.ndim == 4 and a.shape[1] != 1:
        fix = (
            "move the channel axis first: numpy.moveaxis(a, -1, 1)"
            if a.shape[-1] == 1
            else "the prior models one scalar field per grid point; save one channel"
        )
        raise ValueError(f"the {what} in {path} have shape {a.shape}, not (N, 1, H, W); {fix}")
    if a.ndim not in (3, 4):
        raise ValueError(f"the {what} in {path} must have shape (N, H, W) or (N, 1, H, W), got {a.shape}")
    h, w = a.shape[-2:]
    if h != w or h < 4:
        raise ValueError(
            f"the {what} in {path} are {h}x{w} grids; give square grids of at least 4x4 (pad or crop them)"
        )
    if a.shape[0] < min_count:
        raise ValueError(f"{path} holds {a.shape[0]} of the {what}; at least {min_count} are needed")
    bad = _nonfinite_rows(a)
    if bad:
        raise ValueError(
            f"{len(bad)} of the {what} in {path} contain NaN or inf (index {bad[:5]}"
            f"{'...' if len(bad) > 5 else ''}); drop or repair them, e.g. a[numpy.isfinite(a).all((1, 2))]"
        )
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).reshape(a.shape[0], 1, h, w)


def load_measurements(path) -> torch.Tensor:
    """Measurements ``(M, ...)`` from a ``.npy`` file (one row per problem instance) as float32."""
    a = _load_npy(path, "measurements")
    if a.ndim < 2:
        raise ValueError(
            f"the measurements in {path} have shape {a.shape}: give one row per problem instance, "
            "(M, ...); one measurement vector y is saved as y[None], shape (1, m)"
        )
    if a.shape[0] == 0 or a[0].size == 0:
        raise ValueError(f"the measurements in {path} are empty (shape {a.shape})")
    bad = _nonfinite_rows(a)
    if bad:
        raise ValueError(
            f"measurement rows {bad[:5]}{'...' if len(bad) > 5 else ''} in {path} contain NaN or inf; "
            "drop those rows, or leave the missing entries out with an observation operator (--operator)"
        )
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def load_operator(path) -> torch.Tensor:
    """An observation operator: a float32 matrix ``(m, n)``, or a boolean mask (returned as a bool tensor)."""
    a = _load_npy(path, "observation operator")
    if a.dtype.kind == "b":
        if not a.any():
            raise ValueError(f"the observation mask in {path} observes nothing (every entry is False)")
        return torch.from_numpy(a.copy())
    if a.ndim != 2:
        raise ValueError(
            f"the observation operator in {path} has shape {a.shape}; give a matrix (m, n) with one row "
            "per measured value, or a boolean mask (dtype bool) of the observed entries"
        )
    if not np.isfinite(a).all():
        raise ValueError(f"the observation operator in {path} contains NaN or inf")
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


# ----------------------------------------------------------------------------------------- forward models


def python_function(spec: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function named by ``module:function`` (``package.module:function``; the working folder is searched
    too, like ``python -m``), as a function of a torch batch: it is called on a float32 NumPy copy and its
    result (NumPy, torch or any array) comes back as a tensor."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--forward {spec!r} is not of the form module:function (e.g. mysim:forward)")
    if os.getcwd() not in sys.path:  # like `python -m`: the working folder's modules import too
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        where = f"{module_name.replace('.', '/')}.py"
        raise ValueError(
            f"no module {err.name!r} for --forward {spec}; install it, or run from the folder that holds {where}"
        ) from None
    except Exception as err:  # noqa: BLE001 -- a user's module may fail to import in any way
        raise ValueError(
            f"importing {module_name!r} for --forward {spec} failed: {type(err).__name__}: {err}"
        ) from None
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise ValueError(f"module {module_name!r} has no {attr!r} for --forward {spec}")
    if not callable(fn):
        raise ValueError(f"--forward {spec}: {attr!r} in {module_name!r} is not a function")
    return _NumpyCall(fn)


class _NumpyCall:
    """``fn`` on a NumPy copy of a chunk of fields (picklable when ``fn`` is a module-level function)."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, x: torch.Tensor):
        return _as_float_tensor(self.fn(x.detach().cpu().numpy()), "the function")


class program_function:  # noqa: N801 -- used like a function: program_function(command)(x)
    """An external program as a function of a chunk of fields: ``COMMAND INPUT.npy OUTPUT.npy``."""

    def __init__(self, command: str | list[str], timeout: float | None = None):
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not argv:
            raise ValueError("the forward program is empty; give a command such as 'python sim.py'")
        if shutil.which(argv[0]) is None:
            raise ValueError(
                f"the forward program {argv[0]!r} was not found; give a path to an executable or a "
                "command on PATH (e.g. 'python sim.py')"
            )
        self.argv, self.timeout = argv, timeout
        self.command = " ".join(shlex.quote(a) for a in argv)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with tempfile.TemporaryDirectory(prefix="steerdiff-forward-") as tmp:
            inp, out = Path(tmp) / "input.npy", Path(tmp) / "output.npy"
            np.save(inp, x.detach().cpu().numpy(), allow_pickle=False)
            try:
                done = subprocess.run(
                    [*self.argv, str(inp), str(out)],
                    capture_output=True,
                    text=True,
                    timeout=self.timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise ProgramError(f"`{self.command}` ran longer than {self.timeout} s") from None
            except OSError as err:
                raise ProgramError(f"`{self.command}` could not be started: {err}") from None
            if done.returncode != 0:
                lines = [line for line in (done.stderr or "").splitlines() if line.strip()]
                last = f": {lines[-1].strip()}" if lines else ""
                raise ProgramError(f"`{self.command}` exited with status {done.returncode}{last}")
            if not out.is_file():
                raise ProgramError(
                    f"`{self.command}` wrote no output; it must save its result with "
                    "numpy.save(sys.argv[2], y)"
                )
            try:
                y = np.load(out, allow_pickle=False)
            except (ValueError, OSError) as err:
                raise ProgramError(
                    f"the output of `{self.command}` is not a numeric .npy array ({err})"
                ) from None
        return _as_float_tensor(y, f"`{self.command}`")


def _as_float_tensor(y, who: str) -> torch.Tensor:
    try:
        a = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
    except Exception as err:  # noqa: BLE001
        raise TypeError(f"{who} returned {type(y).__name__}, not an array ({err})") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{who} returned an array of dtype {a.dtype}; return real numbers")
    return torch.from_numpy(
        np.ascontiguousarray(a, dtype=np.float64 if a.dtype == np.float64 else np.float32)
    )


class _Checked:
    """A chunk function whose outputs are checked where they are made: one row shape (``rule``: ``("shape",
    shape)`` or ``("size", n)``) and, with ``penalty``, non-finite rows returned finite with a flag column so the
    forward model can score and count them (the core's checks still name every other failure)."""

    def __init__(self, fn: Callable, rule: tuple, penalty: bool, name: str):
        self.fn, self.rule, self.penalty, self.name = fn, rule, penalty, name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.as_tensor(self.fn(x))
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            return y  # map_rows names the wrong row count
        kind, want = self.rule
        row = tuple(y.shape[1:])
        if kind == "shape" and row != tuple(want):
            raise ValueError(
                f"{self.name} returned rows of shape {row}, but the measurements are rows of shape {tuple(want)}; "
                f"return (B, {', '.join(map(str, want))}), or map its outputs to the measurements with an "
                "observation operator (--operator)"
            )
        if kind == "size" and int(np.prod(row)) != want:
            raise ValueError(
                f"{self.name} returned {int(np.prod(row))} values per row (shape {row}), but the observation "
                f"operator has {want} columns; give one operator column per output value"
            )
        if not y.is_floating_point():
            y = y.float()
        if not self.penalty:
            return y
        flat = y.reshape(y.shape[0], -1)
        bad = ~torch.isfinite(flat).all(1)
        return torch.cat([torch.where(bad[:, None], 0.0, flat), bad[:, None].to(flat.dtype)], 1)


def make_executor(workers: int, program: bool) -> Executor | None:
    """``workers`` > 1: a thread pool for a program (the work runs in its processes), a process pool for a
    Python function; otherwise None (in this process)."""
    if workers <= 1:
        return None
    return ThreadPoolExecutor(workers) if program else ProcessPoolExecutor(workers)


class UserForwardModel(ForwardModel):
    """A forward model built from a user's pieces: ``function`` (fields (B, 1, H, W) -> outputs, black box;
    None: the field itself) followed by ``operator`` (an (m, n) matrix on the flattened output, or a boolean
    mask of the observed entries; None: the output as it is), giving measurements of ``output_shape``.

    ``function`` receives torch tensors (wrap NumPy code with :func:`python_function` specs or
    :class:`program_function`); it runs through :func:`~steerdiff.core.map_rows` on ``executor`` in chunks of
    ``chunk_size`` rows. Without a function the model is linear and differentiable (every method works);
    with one it is a black box (EnKG, EKI, SCG, SMC).
    """

    def __init__(
        self,
        input_shape,
        output_shape,
        function: Callable | None = None,
        operator: torch.Tensor | None = None,
        name: str | None = None,
        executor: Executor | None = None,
        chunk_size: int | None = None,
        **kwargs,
    ):
        if function is None and operator is None:
            raise ValueError("a forward model needs a function, a program or an observation operator")
        super().__init__(input_shape, output_shape, differentiable=function is None, **kwargs)
        self.function, self.executor, self.chunk_size = function, executor, chunk_size
        self.name = name or ("observation operator" if function is None else "forward model")
        self.m = int(np.prod(self.output_shape))
        self.operator = operator
        count = self.m
        if operator is not None and operator.dtype == torch.bool:
            count = int(operator.sum())
            rows = (self.input_shape, self.input_shape[1:]) if function is None else (tuple(operator.shape),)
            if tuple(operator.shape) not in rows:
                raise ValueError(
                    f"the observation mask has shape {tuple(operator.shape)}, but the fields are "
                    f"{self.input_shape[1:]}; give a mask of one field's shape"
                )
            self.rule = ("shape", tuple(operator.shape))
        elif operator is not None:
            count = operator.shape[0]
            if function is None and operator.shape[1] != int(np.prod(self.input_shape)):
                grid = "x".join(map(str, self.input_shape[1:]))
                raise ValueError(
                    f"the observation operator has {operator.shape[1]} columns, but a field has "
                    f"{int(np.prod(self.input_shape))} values ({grid}); give one column per grid point "
                    "(row-major)"
                )
            self.rule = ("size", operator.shape[1])
        else:
            self.rule = ("shape", self.output_shape)
        if count != self.m:
            raise ValueError(
                f"the observation operator gives {count} values per measurement, but a measurement row "
                f"has {self.m} (shape {self.output_shape}); give one operator row (or mask entry) per "
                "measured value"
            )

    def simulate(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if self.function is None:
            flat = x.reshape(b, -1)
        else:
            penalty = self.on_blowup == "penalty"
            fn = _Checked(self.function, self.rule, penalty, self.name)
            try:
                out = map_rows(fn, x, executor=self.executor, chunk_size=self.chunk_size, what=self.name)
            except ForwardModelError as err:
                hint = (
                    ""
                    if penalty or "NaN" not in str(err)
                    else "; or score such rows with --on-blowup penalty"
                )
                raise ForwardModelError(f"{err}{hint}", err.rows, err.completed) from None
            flat = out.reshape(b, -1).to(device=x.device, dtype=x.dtype)
            if penalty:
                bad = flat[:, -1] > 0.5
                flat = torch.where(bad[:, None], torch.full_like(flat[:, :-1], float("nan")), flat[:, :-1])
        if self.operator is None:
            y = flat
        elif self.operator.dtype == torch.bool:
            y = flat[:, self.operator.to(x.device).reshape(-1)]
        else:
            y = flat @ self.operator.to(device=x.device, dtype=flat.dtype).T
        return y.reshape(b, *self.output_shape)
