"""The synthesizer the agent trainer calls: policy-guided (or unguided) samples as a transition dataset."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .data import OfflineDataset
from .diffusion import SamplerConfig, TrajectoryDiffusion
from .guidance import PolicyGuidance

__all__ = ["Synthesizer"]


@dataclass
class Synthesizer:
    """``synth(policy)``: ``num`` windows of ``length`` rows; guided by ``policy`` when it is given and
    ``coeff > 0`` (``policy=None`` gives unguided samples, the paper's first synthetic set)."""

    model: TrajectoryDiffusion
    num: int = 64
    length: int | None = None
    coeff: float = 1.0
    cosine: float = 0.3
    normalize: bool = True
    at: str = "denoised"
    apply: str = "estimate"
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    seed: int = 0
    calls: int = 0

    def guidance(self, policy) -> list:
        if policy is None or self.coeff == 0:
            return []
        return [
            PolicyGuidance(
                policy=policy,
                normalizer=self.model.normalizer,
                coeff=self.coeff,
                cosine=self.cosine,
                normalize=self.normalize,
                at=self.at,
                apply=self.apply,
            )
        ]

    def __call__(self, policy=None) -> OfflineDataset:
        gen = torch.Generator(self.model.device).manual_seed(self.seed * 10_007 + self.calls)
        self.calls += 1
        was_training = getattr(policy, "training", False)
        if policy is not None:
            policy.eval()
        try:
            return self.model.synthesize(self.num, self.length, self.guidance(policy), self.sampler, gen)
        finally:
            if was_training:
                policy.train()
