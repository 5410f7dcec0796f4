"""steerdiff-core: steer diffusion models at sampling time.

Noise schedules, denoiser parametrizations, stateless solvers, one sampling loop with guidance hooks,
training (EMA, resumable checkpoints, DDP), networks, model bundles, and one guidance library::

    from steerdiff.core import EDM, ReconstructionGuidance, gaussian, sample, sigma_grid

Everything listed in ``__all__`` is public; the submodules (``schedules``, ``solvers``, ``guidance``, ...) hold
the same names and more detail.
"""

from importlib import metadata as _metadata

from .analytic import GaussianMixture, gaussian, linear_gaussian_posterior
from .bundle import Bundle, BundleError, load_pretrained, read_bundle_config, save_pretrained
from .checkpoint import CheckpointError, load_checkpoint, load_denoiser, save_checkpoint
from .command import UsageError
from .denoiser import PARAMETRIZATIONS, Denoiser
from .external import DiscreteTimeDenoiser, SigmaDenoiser, from_diffusers, timestep_sigmas
from .guidance import (
    AdaptiveProjectedGuidance,
    ClassifierFreeGuidance,
    ClassifierGuidance,
    EnsembleKalmanGuidance,
    FeynmanKacSteering,
    Guidance,
    Inpainting,
    ReconstructionGuidance,
    StochasticControlGuidance,
)
from .guidance.search import TreeSearchGuidance
from .io import atomic_directory, atomic_open, atomic_path, save_figure, save_npy, write_json
from .nets import MLP, NETWORKS, S4DNet, UNet1D, UNet2D, build_network
from .parallel import ForwardModelError, map_rows
from .runtime import accelerate, autocast, cache_dir, configure, resolve_device, seed_everything, set_threads
from .sampling import Costs, SampleResult, sample
from .schedules import EDM, SCHEDULES, SPACINGS, VE, Schedule, VPCosine, VPLinear, get_schedule, sigma_grid
from .sharding import sample_in_shards
from .solvers import DDIM, DDPM, SOLVERS, DPMSolverPP2M, Euler, Heun, Solver, get_solver
from .toy import TOY_DATASETS, toy_dataset
from .training import TrainConfig, TrainResult, train
from .tuning import Choice, LinearRange, LogRange, TuningResult, space_for, tune

try:
    __version__ = _metadata.version("steerdiff-core")
except _metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    # schedules and step grids
    "Schedule",
    "VPLinear",
    "VPCosine",
    "VE",
    "EDM",
    "SCHEDULES",
    "SPACINGS",
    "get_schedule",
    "sigma_grid",
    # denoisers and networks
    "Denoiser",
    "PARAMETRIZATIONS",
    "MLP",
    "UNet1D",
    "UNet2D",
    "S4DNet",
    "NETWORKS",
    "build_network",
    # models trained elsewhere
    "DiscreteTimeDenoiser",
    "SigmaDenoiser",
    "from_diffusers",
    "timestep_sigmas",
    # solvers and the sampling loop
    "Solver",
    "DDPM",
    "DDIM",
    "Euler",
    "Heun",
    "DPMSolverPP2M",
    "SOLVERS",
    "get_solver",
    "sample",
    "SampleResult",
    "Costs",
    # guidance
    "Guidance",
    "ClassifierFreeGuidance",
    "AdaptiveProjectedGuidance",
    "ClassifierGuidance",
    "ReconstructionGuidance",
    "Inpainting",
    "StochasticControlGuidance",
    "FeynmanKacSteering",
    "EnsembleKalmanGuidance",
    "TreeSearchGuidance",
    # automatic tuning
    "tune",
    "TuningResult",
    "LogRange",
    "LinearRange",
    "Choice",
    "space_for",
    # training, checkpoints and bundles
    "TrainConfig",
    "TrainResult",
    "train",
    "save_checkpoint",
    "load_checkpoint",
    "load_denoiser",
    "CheckpointError",
    "Bundle",
    "BundleError",
    "save_pretrained",
    "load_pretrained",
    "read_bundle_config",
    # black-box models on executors
    "map_rows",
    "sample_in_shards",
    "ForwardModelError",
    # runtime, files and errors
    "resolve_device",
    "accelerate",
    "autocast",
    "set_threads",
    "seed_everything",
    "cache_dir",
    "configure",
    "atomic_path",
    "atomic_open",
    "atomic_directory",
    "write_json",
    "save_figure",
    "save_npy",
    "UsageError",
    # analytic references and toy data
    "gaussian",
    "GaussianMixture",
    "linear_gaussian_posterior",
    "toy_dataset",
    "TOY_DATASETS",
]
