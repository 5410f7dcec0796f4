"""Side-by-side comparison of the methods on one Navier-Stokes problem and one budget per noise level.

Used by ``benchmarks/inverse_ns.py`` and ``steerdiff-inverse benchmark``. Data and the trained prior are
cached in ``cache_dir`` (keyed by the setting), so a second run only solves.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .methods import MethodConfig, solve
from .metrics import evaluate
from .prior import PriorConfig, load_prior, train_prior
from .problems import NavierStokesProblem

__all__ = ["Setting", "QUICK", "FULL", "prepare", "run", "default_cache"]


@dataclass
class Setting:
    size: int = 64
    dt: float = 1e-2
    num_train: int = 1024
    prior: PriorConfig = field(default_factory=lambda: PriorConfig(base_channels=16, steps=2000))
    num_test: int = 2
    num_particles: int = 64
    num_steps: int = 40
    num_updates: int = 2
    eki_factor: int = 4               # EKI gets this many times EnKG's sequential forward calls
    num_candidates: int = 4
    dps_scale: float = 1.0
    noise_levels: tuple[float, ...] = (0.0, 1.0, 2.0)
    methods: tuple[str, ...] = ("enkg", "dps", "eki", "scg", "smc")

    def key(self) -> str:
        return f"ns{self.size}_dt{self.dt:g}_n{self.num_train}_b{self.prior.base_channels}_s{self.prior.steps}"


QUICK = Setting(size=32, dt=2e-2, num_train=256, prior=PriorConfig(base_channels=8, channel_mults=(1, 2), steps=300),
                num_test=1, num_particles=16, num_steps=16, num_updates=1, noise_levels=(0.0, 1.0, 2.0))
FULL = Setting()


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "steerdiff" / "inverse_ns"


def prepare(setting: Setting, cache_dir, device="cpu", progress=True):
    """The problem (noise-free), the prior (trained once, then loaded) and the training-data statistics."""
    problem = NavierStokesProblem(size=setting.size, dt=setting.dt)
    path = Path(cache_dir) / setting.key()
    if not (path / "prior.json").exists():
        fields = problem.sample_fields(setting.num_train, torch.Generator().manual_seed(0), progress=progress)
        train_prior(fields, path, setting.prior, device=device, progress=progress)
    return problem, load_prior(path, device=device)


def method_config(setting: Setting, method: str, noise: float) -> MethodConfig:
    n = setting.num_steps
    guided = (n - int(0.05 * n) - int(0.05 * n)) * setting.num_updates
    return MethodConfig(num_particles=setting.num_particles, num_steps=n, num_updates=setting.num_updates,
                        iterations=setting.eki_factor * guided, num_candidates=setting.num_candidates,
                        likelihood_std=max(noise, 1.0), dps_scale=setting.dps_scale)


def run(setting: Setting, cache_dir, seed: int = 0, device="cpu", progress=True) -> list[dict]:
    problem, prior = prepare(setting, cache_dir, device, progress)
    rows = []
    for noise in setting.noise_levels:
        problem = NavierStokesProblem(size=setting.size, dt=setting.dt, noise_std=noise, on_blowup="penalty")
        g = torch.Generator(device).manual_seed(10_000 + seed)  # held-out truths, disjoint from training seed 0
        truth = problem.sample_fields(setting.num_test, g, device=device)
        y = problem.forward.measure(truth, g)
        for method in setting.methods:
            cfg = method_config(setting, method, noise)
            sol = solve(method, prior, problem, y, cfg, generator=torch.Generator(device).manual_seed(seed))
            res = evaluate(sol, problem, truth, y)
            rows.append({"noise": noise, "method": method, **res,
                         "budget": {k: v for k, v in dataclasses.asdict(cfg).items()
                                    if k in ("num_particles", "num_steps", "num_updates", "iterations",
                                             "num_candidates")}})
    return rows


def describe(setting: Setting) -> str:
    return json.dumps(dataclasses.asdict(setting))
