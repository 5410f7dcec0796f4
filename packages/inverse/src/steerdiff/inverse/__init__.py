"""steerdiff-inverse: derivative-free inverse problems with diffusion priors and black-box simulators.

Forward models (:mod:`.forward`), problems (:mod:`.problems`: Navier-Stokes, linear, saturated), the field
prior (:mod:`.prior`), solvers on one budget (:mod:`.methods`: EnKG, EKI, DPS, SCG, SMC) and metrics.
"""

from .fields import GaussianRandomField
from .forward import ForwardModel, ForwardModelBlowup, FunctionForwardModel
from .methods import METHODS, MethodConfig, Solution, solve
from .metrics import evaluate, relative_l2
from .navier_stokes import NavierStokes2D
from .prior import FieldPrior, PriorConfig, load_prior, train_prior
from .problems import PROBLEMS, LinearProblem, NavierStokesProblem, SaturatedProblem, make_problem

__all__ = [
    "METHODS",
    "PROBLEMS",
    "FieldPrior",
    "ForwardModel",
    "ForwardModelBlowup",
    "FunctionForwardModel",
    "GaussianRandomField",
    "LinearProblem",
    "MethodConfig",
    "NavierStokes2D",
    "NavierStokesProblem",
    "PriorConfig",
    "SaturatedProblem",
    "Solution",
    "evaluate",
    "load_prior",
    "make_problem",
    "relative_l2",
    "solve",
    "train_prior",
]
