"""steerdiff-inverse: derivative-free inverse problems with diffusion priors and black-box simulators.

Start with :class:`InversePipeline` (a trained field prior plus the problem it is for: ``from_pretrained``,
``solve``, ``save_pretrained``). The pieces: forward models (:class:`ForwardModel`,
:class:`FunctionForwardModel`), problems (:class:`NavierStokesProblem`, :class:`LinearProblem`,
:class:`SaturatedProblem`, :class:`CustomProblem`), data sets (:func:`make_dataset`,
:func:`load_dataset`), the field prior (:func:`train_prior`, :func:`load_prior`), solvers on one budget
(:func:`solve` with EnKG, EKI, DPS, SCG, SMC) and metrics (:func:`evaluate`, :func:`relative_l2`).
Your own problem from files: :func:`load_fields`, :func:`load_measurements`, :func:`load_operator` and
:class:`UserForwardModel` with a Python function (:func:`python_function`) or an external program
(:class:`program_function`).
Benchmark protocols live in ``steerdiff.inverse.benchmark``.
"""

from importlib import metadata as _metadata

from .data import Dataset, DatasetError, load_dataset, make_dataset, save_dataset
from .fields import GaussianRandomField
from .forward import ForwardModel, ForwardModelBlowup, FunctionForwardModel
from .methods import METHODS, MethodConfig, Solution, solve
from .metrics import evaluate, relative_l2
from .navier_stokes import NavierStokes2D
from .pipeline import InversePipeline
from .plots import plot_solution
from .prior import FieldPrior, PriorConfig, load_prior, train_prior
from .problems import (
    PROBLEMS,
    CustomProblem,
    InverseProblem,
    LinearProblem,
    NavierStokesProblem,
    SaturatedProblem,
    make_problem,
)
from .tasks import InverseTask, LinearTask, NavierStokesTask, guided_tasks
from .user import (
    ProgramError,
    UserForwardModel,
    load_fields,
    load_measurements,
    load_operator,
    make_executor,
    program_function,
    python_function,
)

try:
    __version__ = _metadata.version("steerdiff-inverse")
except _metadata.PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "METHODS",
    "PROBLEMS",
    "CustomProblem",
    "Dataset",
    "DatasetError",
    "FieldPrior",
    "ForwardModel",
    "ForwardModelBlowup",
    "FunctionForwardModel",
    "GaussianRandomField",
    "InversePipeline",
    "InverseProblem",
    "InverseTask",
    "LinearProblem",
    "LinearTask",
    "MethodConfig",
    "NavierStokes2D",
    "NavierStokesProblem",
    "NavierStokesTask",
    "PriorConfig",
    "ProgramError",
    "SaturatedProblem",
    "Solution",
    "UserForwardModel",
    "__version__",
    "evaluate",
    "guided_tasks",
    "load_dataset",
    "load_fields",
    "load_measurements",
    "load_operator",
    "load_prior",
    "make_dataset",
    "make_executor",
    "make_problem",
    "plot_solution",
    "program_function",
    "python_function",
    "relative_l2",
    "save_dataset",
    "solve",
    "train_prior",
]
