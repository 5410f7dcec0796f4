"""How much the prior sounds like its data, and a prior trained on every chorale, chosen on validation.

* :func:`~steerdiff.music.metrics.voice_realism` (in ``metrics``): the share of grid steps with the data's
  typical number of sounding notes (four for the chorales), beside the share with more.
* :func:`validation_loss`: the denoising loss on held-out windows at fixed noise levels and noise (the same
  draws for every model, so two models compare on equal terms).
* :func:`prior_splits`: all of music21's four-part chorales, split so that the benchmark's test chorales (the
  demo's held-out ones) and validation chorales stay out of training.
* :func:`measure_prior`: validation loss, voice realism and OA of unguided samples for one model.
* ``python -m steerdiff.music.train_prior``: trains candidates (U-Net widths) on every chorale with transposition to
  all keys, in stages (resumable: run the same command again to continue), measures each stage on the
  validation chorales and keeps the best as a model bundle; ``--measure DIR`` measures any model bundle.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from steerdiff.core.runtime import cache_dir

from .data import bach_chorales, split
from .demo import DEMO_ROLL
from .metrics import oa_table, voice_realism
from .model import schedule
from .pipeline import MusicPipeline
from .roll import RollConfig

__all__ = [
    "validation_loss",
    "prior_splits",
    "measure_prior",
    "prior_run_dir",
    "PRIOR_STEPS",
]

PRIOR_STEPS = 28  # sampler steps of the unguided samples that are measured (the benchmark's S)


@torch.no_grad()
def validation_loss(denoiser, data: torch.Tensor, levels: int = 4, batch: int = 256, seed: int = 0) -> float:
    """Mean denoising loss of ``denoiser`` on windows ``data`` (N, C, P, T): ``levels`` noise levels per
    window drawn from the training distribution, with fixed draws (``seed``)."""
    g = torch.Generator().manual_seed(seed)
    sched = schedule()
    device = next(denoiser.parameters()).device
    total, count = 0.0, 0
    for _ in range(levels):
        for i in range(0, data.shape[0], batch):
            x0 = data[i : i + batch]
            sigma = sched.sample_training_sigma(x0.shape[0], generator=g)
            noise = torch.randn(x0.shape, generator=g)
            loss = denoiser.loss(x0.to(device), sigma.to(device), noise.to(device))
            total += float(loss.sum())
            count += x0.shape[0]
    return total / count


def prior_splits(config: RollConfig | None = None, val_pieces: int = 15, progress: bool = True):
    """(train, validation, test) pieces from all four-part chorales of music21's corpus: test = the demo's
    held-out chorales (the benchmark's test pieces), validation = the ``val_pieces`` chorales after the demo's
    60 (the benchmark's validation pieces), train = every other chorale."""
    config = config or RollConfig(**DEMO_ROLL)
    every = bach_chorales(config, num_pieces=None, progress=progress)
    demo_train, test = split(every.subset(range(60)), 0.15, 0)  # prepare_data's split of the demo
    val = every.subset(range(60, 60 + val_pieces))
    held = set(test.names) | set(val.names)
    train = every.subset([i for i, n in enumerate(every.names) if n not in held])
    return train, val, test


def measure_prior(
    pipe: MusicPipeline,
    real: torch.Tensor,
    num_samples: int = 64,
    steps: int = PRIOR_STEPS,
    seed: int = 0,
    val_windows: torch.Tensor | None = None,
) -> dict:
    """Unguided samples of ``pipe`` against real windows ``real``: voice realism and OA (and the validation
    loss on ``val_windows`` when given)."""
    t0 = time.time()
    gen = pipe.generate(method="unguided", num_samples=num_samples, steps=steps, seed=seed)
    x = gen.x.cpu()
    out = {
        "num_samples": num_samples,
        "sampler_steps": steps,
        "voices": voice_realism(x, real, pipe.roll),
        "oa": oa_table(x, real, pipe.roll),
    }
    if val_windows is not None:
        out["val_loss"] = validation_loss(pipe.denoiser, val_windows)
    out["seconds"] = round(time.time() - t0, 1)
    return out


def prior_run_dir() -> Path:
    """Where the better prior's candidates and the chosen model live (under ``$STEERDIFF_CACHE/music``)."""
    return cache_dir("music", "prior_all_chorales")


def _choose(stages: list[dict], tolerance: float = 0.05) -> dict:
    """The stage with the highest voice realism among those within ``tolerance`` of the lowest val loss."""
    best_loss = min(s["val_loss"] for s in stages)
    ok = [s for s in stages if s["val_loss"] <= best_loss * (1 + tolerance)]
    return max(ok, key=lambda s: (s["voices"]["generated"]["typical"], -s["val_loss"]))
