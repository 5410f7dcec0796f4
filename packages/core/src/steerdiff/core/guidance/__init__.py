"""The guidance library: estimate corrections, transition selection and ensemble updates.

Every guidance plugs into :func:`steerdiff.core.sampling.sample` through ``guidance=[...]`` and composes
with every solver; several can run at once (at most one transition-selection method). Every guidance takes
``interval=(sigma_lo, sigma_hi)`` and ``window=(start, stop)`` (fractions of the run's steps); the step's
starting point decides whether it is on.
"""

from .base import Guidance, evaluate_reward, match_batch, weighted_reward
from .ensemble import ENKG_STEP_SIZES, EnsembleKalmanGuidance, enkg_direction, enkg_step_size
from .estimate import (
    AdaptiveProjectedGuidance,
    ClassifierFreeGuidance,
    ClassifierGuidance,
    Inpainting,
    ReconstructionGuidance,
)
from .selection import (
    FeynmanKacSteering,
    StochasticControlGuidance,
    effective_sample_size,
    systematic_resample,
)

__all__ = [
    "Guidance",
    "evaluate_reward",
    "match_batch",
    "weighted_reward",
    "ClassifierFreeGuidance",
    "AdaptiveProjectedGuidance",
    "ClassifierGuidance",
    "ReconstructionGuidance",
    "Inpainting",
    "StochasticControlGuidance",
    "FeynmanKacSteering",
    "effective_sample_size",
    "systematic_resample",
    "EnsembleKalmanGuidance",
    "enkg_direction",
    "enkg_step_size",
    "ENKG_STEP_SIZES",
]
