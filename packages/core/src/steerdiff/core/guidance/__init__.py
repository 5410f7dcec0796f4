"""The guidance library: estimate corrections, transition selection and ensemble updates.

Every guidance plugs into :func:`steerdiff.core.sampling.sample` through ``guidance=[...]`` and composes
with every solver; several can run at once (at most one transition-selection method).
"""

from .base import Guidance, evaluate_reward, match_batch, weighted_reward
from .ensemble import EnsembleKalmanGuidance, enkg_direction
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
]
