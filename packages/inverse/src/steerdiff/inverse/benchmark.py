"""Side-by-side comparison of the methods on one Navier-Stokes problem and one budget per noise level.

Used by ``benchmarks/inverse_ns.py`` and ``steerdiff-inverse benchmark``. The training data and the prior are
cached in ``cache_dir`` under a hash of everything they depend on (grid, dt, Re, spin-up, number of fields,
prior config), so a second run only solves; a killed training run resumes from its last checkpoint (the core's
``train``). Each method's main hyper-parameter is chosen on separate validation fields (seed disjoint from
the training and test fields) at the first noise level, from a small grid (``Setting.tune``), then used on the
test fields at every noise level; an empty ``tune`` uses ``Setting.defaults``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .methods import MethodConfig, solve
from .metrics import evaluate
from .prior import PriorConfig, load_prior, train_prior
from .problems import NavierStokesProblem

__all__ = ["FULL", "QUICK", "Setting", "default_cache", "method_config", "prepare", "run", "tune"]

# main hyper-parameter of each method (SCG's is its candidate count, a budget, so it is not tuned)
TUNED = {"enkg": "scale", "eki": "scale", "dps": "dps_scale", "smc": "likelihood_std"}


@dataclass
class Setting:
    size: int = 32
    dt: float = 1e-2                  # the paper's CFL rule 0.5 h / max|u| at this grid; 2e-2 blows up EKI's ensemble
    reynolds: float = 200.0
    horizon: float = 1.0
    downsample: int = 2
    num_train: int = 1024
    prior: PriorConfig = field(default_factory=lambda: PriorConfig(base_channels=16, channel_mults=(1, 2, 2),
                                                                   steps=2000, batch_size=32))
    num_test: int = 3
    num_val: int = 1
    num_particles: int = 64
    num_steps: int = 16
    num_updates: int = 1
    eki_factor: int = 4               # EKI gets this many times EnKG's sequential forward calls
    num_candidates: int = 4
    noise_levels: tuple[float, ...] = (0.0, 1.0, 2.0)
    methods: tuple[str, ...] = ("enkg", "dps", "eki", "scg", "smc")
    defaults: dict = field(default_factory=lambda: {"enkg": 2.0, "eki": 1.0, "dps": 10.0, "smc": 3.0})
    tune: dict = field(default_factory=lambda: {"enkg": (1.0, 2.0, 4.0), "eki": (0.5, 1.0, 2.0),
                                                "dps": (3.0, 10.0, 30.0), "smc": (1.0, 3.0, 10.0)})

    def data_config(self) -> dict:
        """Everything the training fields and the prior depend on."""
        return {"size": self.size, "dt": self.dt, "reynolds": self.reynolds, "spinup": 5.0,
                "num_train": self.num_train, "prior": dataclasses.asdict(self.prior)}

    def key(self) -> str:
        digest = hashlib.sha1(json.dumps(self.data_config(), sort_keys=True).encode()).hexdigest()[:10]
        return f"ns{self.size}_{digest}"

    def problem(self, noise: float = 0.0) -> NavierStokesProblem:
        return NavierStokesProblem(size=self.size, reynolds=self.reynolds, horizon=self.horizon, dt=self.dt,
                                   downsample=self.downsample, noise_std=noise, on_blowup="penalty")


QUICK = Setting(num_train=64, prior=PriorConfig(base_channels=8, channel_mults=(1, 2), steps=40, batch_size=16),
                num_test=1, num_particles=8, num_steps=8, tune={})
FULL = Setting()


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "steerdiff" / "inverse_ns"


def prepare(setting: Setting, cache_dir, device="cpu", progress=True):
    """The prior, trained once (resumed if a run was killed), then loaded from ``cache_dir/setting.key()``."""
    path = Path(cache_dir) / setting.key()
    if not (path / "prior.json").exists():
        problem = setting.problem()
        fields = problem.sample_fields(setting.num_train, torch.Generator().manual_seed(0), progress=progress)
        train_prior(fields, path, setting.prior, device=device, progress=progress)
    return load_prior(path, device=device)


def method_config(setting: Setting, method: str, noise: float, value: float | None = None) -> MethodConfig:
    """The budget of ``setting`` with ``method``'s tuned hyper-parameter set to ``value`` (default: defaults)."""
    n = setting.num_steps
    guided = (n - int(0.05 * n) - int(0.05 * n)) * setting.num_updates
    cfg = MethodConfig(num_particles=setting.num_particles, num_steps=n, num_updates=setting.num_updates,
                       iterations=setting.eki_factor * guided, num_candidates=setting.num_candidates)
    if method in TUNED:
        value = setting.defaults[method] if value is None else value
        if method == "smc":  # the likelihood temperature never goes below the measurement noise
            value = max(value, noise)
        cfg = dataclasses.replace(cfg, **{TUNED[method]: value})
    return cfg


def _solve_and_score(setting, method, prior, problem, truth, y, value, seed, device):
    cfg = method_config(setting, method, problem.forward.noise_std, value)
    sol = solve(method, prior, problem, y, cfg, generator=torch.Generator(device).manual_seed(seed))
    return cfg, evaluate(sol, problem, truth, y)


def tune(setting: Setting, prior, seed: int = 0, device="cpu", log=print) -> dict:
    """Pick each method's hyper-parameter from ``setting.tune`` on validation fields (seed 20_000 + seed)."""
    chosen = dict(setting.defaults)
    if not setting.tune:
        return chosen
    noise = setting.noise_levels[0]
    problem = setting.problem(noise)
    g = torch.Generator(device).manual_seed(20_000 + seed)  # disjoint from training (0) and test (10_000 + seed)
    truth = problem.sample_fields(setting.num_val, g, device=device)
    y = problem.forward.measure(truth, g)
    for method, grid in setting.tune.items():
        if method not in setting.methods:
            continue
        scores = {v: _solve_and_score(setting, method, prior, problem, truth, y, v, seed, device)[1]["rel_l2"]
                  for v in grid}
        chosen[method] = min(scores, key=lambda v: scores[v] if math.isfinite(scores[v]) else math.inf)
        log(f"tune {method} {TUNED[method]}: " + ", ".join(f"{v:g} -> {s:.3f}" for v, s in scores.items())
            + f"  => {chosen[method]:g}")
    return chosen


def run(setting: Setting, cache_dir, seed: int = 0, device="cpu", progress=True, log=print) -> tuple[list, dict]:
    """Rows of metrics (one per noise level and method) and the chosen hyper-parameters."""
    prior = prepare(setting, cache_dir, device, progress)
    chosen = tune(setting, prior, seed, device, log)
    rows = []
    for noise in setting.noise_levels:
        problem = setting.problem(noise)
        g = torch.Generator(device).manual_seed(10_000 + seed)  # held-out truths, disjoint from training seed 0
        truth = problem.sample_fields(setting.num_test, g, device=device)
        y = problem.forward.measure(truth, g)
        for method in setting.methods:
            cfg, res = _solve_and_score(setting, method, prior, problem, truth, y, chosen.get(method), seed, device)
            rows.append({"noise": noise, "method": method, **res,
                         "budget": {k: v for k, v in dataclasses.asdict(cfg).items()
                                    if k in ("num_particles", "num_steps", "num_updates", "iterations",
                                             "num_candidates", "scale", "dps_scale", "likelihood_std")}})
    return rows, chosen


def describe(setting: Setting) -> str:
    return json.dumps(dataclasses.asdict(setting))
