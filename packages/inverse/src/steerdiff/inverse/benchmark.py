"""Side-by-side comparison of the methods on one Navier-Stokes problem and one budget per noise level.

Used by ``benchmarks/inverse_ns.py``, ``benchmarks/inverse_ns_identifiability.py`` and
``steerdiff-inverse benchmark``. The training data and the prior are cached in ``cache_dir`` (default:
``$STEERDIFF_CACHE/inverse_ns``) under a hash of everything they depend on (grid, dt, Re, spin-up, number
of fields, prior config), so a second run only solves; a killed training run resumes from its last
checkpoint (the core's ``train``). Each method's main hyper-parameter is chosen on separate validation
fields (seed disjoint from the training and test fields) at the first noise level, from a small grid
(``Setting.tune``), then used on the test fields at every noise level; an empty ``tune`` uses
``Setting.defaults``. The cached prior is a model bundle in ``cache_dir/<key>/model`` (its training
checkpoints beside it in ``checkpoint``).

:func:`results_table` and :func:`ratio_lines` format the comparison; :func:`identifiability_row` measures,
without any prior, how much of the initial vorticity the measurements determine at a given grid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from steerdiff.core.benchmarking import format_table
from steerdiff.core.bundle import BundleError, read_bundle_config
from steerdiff.core.runtime import cache_dir

from .fields import wavenumbers
from .methods import MethodConfig, guided_steps, solve
from .metrics import evaluate, relative_l2
from .prior import DOMAIN, FieldPrior, PriorConfig, load_prior, train_prior
from .problems import NavierStokesProblem

__all__ = [
    "FULL",
    "IDENTIFIABILITY_HEADERS",
    "QUICK",
    "RESULT_HEADERS",
    "TUNED",
    "Setting",
    "band_limited",
    "default_cache",
    "identifiability_notes",
    "identifiability_row",
    "method_config",
    "override",
    "prepare",
    "ratio_lines",
    "results_table",
    "rows_table",
    "run",
    "tune",
]

# main hyper-parameter of each method (SCG's is its candidate count, a budget, so it is not tuned)
TUNED = {"enkg": "scale", "eki": "scale", "dps": "dps_scale", "smc": "likelihood_std"}


@dataclass
class Setting:
    size: int = 32
    dt: float = 1e-2  # the paper's CFL rule 0.5 h / max|u| at this grid; 2e-2 blows up EKI's ensemble
    reynolds: float = 200.0
    horizon: float = 1.0
    downsample: int = 2
    num_train: int = 1024
    prior: PriorConfig = field(
        default_factory=lambda: PriorConfig(
            base_channels=16, channel_mults=(1, 2, 2), steps=2000, batch_size=32
        )
    )
    num_test: int = 3
    num_val: int = 1
    num_particles: int = 64
    num_steps: int = 16
    num_updates: int = 1
    # EnKG's guided steps (start, stop) as fractions of num_steps: at 8 and 16 steps every step is guided
    window: tuple[float, float] = (0.0, 1.0)
    eki_factor: int = 4  # EKI gets this many times EnKG's sequential forward calls
    num_candidates: int = 4
    noise_levels: tuple[float, ...] = (0.0, 1.0, 2.0)
    methods: tuple[str, ...] = ("enkg", "dps", "eki", "scg", "smc")
    defaults: dict = field(default_factory=lambda: {"enkg": 2.0, "eki": 1.0, "dps": 10.0, "smc": 3.0})
    tune: dict = field(
        default_factory=lambda: {
            "enkg": (1.0, 2.0, 4.0),
            "eki": (0.5, 1.0, 2.0),
            "dps": (3.0, 10.0, 30.0),
            "smc": (1.0, 3.0, 10.0),
        }
    )

    def data_config(self) -> dict:
        """Everything the training fields and the prior depend on."""
        return {
            "size": self.size,
            "dt": self.dt,
            "reynolds": self.reynolds,
            "spinup": 5.0,
            "num_train": self.num_train,
            "prior": dataclasses.asdict(self.prior),
        }

    def key(self) -> str:
        digest = hashlib.sha1(json.dumps(self.data_config(), sort_keys=True).encode()).hexdigest()[:10]
        return f"ns{self.size}_{digest}"

    def problem(self, noise: float = 0.0) -> NavierStokesProblem:
        return NavierStokesProblem(
            size=self.size,
            reynolds=self.reynolds,
            horizon=self.horizon,
            dt=self.dt,
            downsample=self.downsample,
            noise_std=noise,
            on_blowup="penalty",
        )


QUICK = Setting(
    num_train=64,
    prior=PriorConfig(base_channels=8, channel_mults=(1, 2), steps=40, batch_size=16),
    num_test=1,
    num_particles=8,
    num_steps=8,
    tune={},
)
FULL = Setting()


def default_cache() -> Path:
    """``$STEERDIFF_CACHE/inverse_ns`` (``~/.cache/steerdiff/inverse_ns`` by default)."""
    return cache_dir("inverse_ns", create=False)


def override(setting: Setting, **overrides) -> Setting:
    """``setting`` with the given fields replaced; ``None`` values keep the setting's own."""
    return dataclasses.replace(setting, **{k: v for k, v in overrides.items() if v is not None})


def _has_bundle(path: Path) -> bool:
    try:
        read_bundle_config(path, DOMAIN)
    except BundleError:
        return False
    return True


def prepare(setting: Setting, cache_dir, device="cpu", progress=True) -> FieldPrior:
    """The prior, trained once (resumed if a run was killed), then loaded from ``cache_dir/setting.key()``."""
    path = Path(cache_dir) / setting.key()
    if not _has_bundle(path / "model"):
        problem = setting.problem()
        fields = problem.sample_fields(setting.num_train, torch.Generator().manual_seed(0), progress=progress)
        train_prior(fields, path, setting.prior, device=device, progress=progress, problem=problem)
    return load_prior(path, device=device)


def method_config(setting: Setting, method: str, noise: float, value: float | None = None) -> MethodConfig:
    """The budget of ``setting`` with ``method``'s tuned hyper-parameter set to ``value``
    (default: ``setting.defaults``)."""
    cfg = MethodConfig(
        num_particles=setting.num_particles,
        num_steps=setting.num_steps,
        num_updates=setting.num_updates,
        window=tuple(setting.window),
        num_candidates=setting.num_candidates,
    )
    cfg.iterations = setting.eki_factor * guided_steps(cfg) * setting.num_updates
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
    g = torch.Generator(device).manual_seed(
        20_000 + seed
    )  # disjoint from training (0) and test (10_000 + seed)
    truth = problem.sample_fields(setting.num_val, g, device=device)
    y = problem.forward.measure(truth, g)
    for method, grid in setting.tune.items():
        if method not in setting.methods:
            continue
        scores = {
            v: _solve_and_score(setting, method, prior, problem, truth, y, v, seed, device)[1]["rel_l2"]
            for v in grid
        }
        chosen[method] = min(scores, key=lambda v: scores[v] if math.isfinite(scores[v]) else math.inf)
        log(
            f"tune {method} {TUNED[method]}: "
            + ", ".join(f"{v:g} -> {s:.3f}" for v, s in scores.items())
            + f"  => {chosen[method]:g}"
        )
    return chosen


def run(
    setting: Setting, cache_dir, seed: int = 0, device="cpu", progress=True, log=print
) -> tuple[list, dict]:
    """Rows of metrics (one per noise level and method) and the chosen hyper-parameters."""
    prior = prepare(setting, cache_dir, device, progress)
    chosen = tune(setting, prior, seed, device, log)
    rows = []
    for noise in setting.noise_levels:
        problem = setting.problem(noise)
        g = torch.Generator(device).manual_seed(
            10_000 + seed
        )  # held-out truths, disjoint from training seed 0
        truth = problem.sample_fields(setting.num_test, g, device=device)
        y = problem.forward.measure(truth, g)
        for method in setting.methods:
            cfg, res = _solve_and_score(
                setting, method, prior, problem, truth, y, chosen.get(method), seed, device
            )
            rows.append(
                {
                    "noise": noise,
                    "method": method,
                    **res,
                    "budget": {
                        k: v
                        for k, v in dataclasses.asdict(cfg).items()
                        if k
                        in (
                            "num_particles",
                            "num_steps",
                            "num_updates",
                            "iterations",
                            "num_candidates",
                            "scale",
                            "dps_scale",
                            "likelihood_std",
                        )
                    },
                }
            )
    return rows, chosen


def describe(setting: Setting) -> str:
    return json.dumps(dataclasses.asdict(setting))


# --------------------------------------------------------------------------------------------- reporting

RESULT_HEADERS = [
    "noise",
    "method",
    "rel L2",
    "misfit",
    "fwd evals",
    "fwd seq",
    "net evals",
    "grad evals",
    "blowups",
    "wall s",
]


def results_table(
    setting: Setting, rows: list, chosen: dict, quick: bool = False, total: float | None = None
) -> tuple[str, list[str], list[list], list[str]]:
    """Title, headers, table rows and notes of the comparison (for ``print_table``)."""
    table = [
        [
            r["noise"],
            r["method"],
            r["rel_l2"],
            r["misfit"],
            r["forward_evals"],
            r["forward_calls"],
            r["network_evals"],
            r["gradient_evals"],
            r["blowups"],
            r["wall_time"],
        ]
        for r in rows
    ]
    p = setting.prior
    title = (
        f"Navier-Stokes inversion, {setting.size}x{setting.size}, Re={setting.reynolds:g}, "
        f"T={setting.horizon:g}, "
        f"observation stride {setting.downsample}; prior: {p.base_channels}-channel U-Net, {p.steps} "
        f"training steps on {setting.num_train} fields"
        + (" (quick: too small to be a useful prior)" if quick else "")
    )
    notes = [
        (
            f"J={setting.num_particles} particles/samples per test field, {setting.num_steps} Karras steps, "
            f"EnKG {setting.num_updates} update(s)/step, EKI {setting.eki_factor}x EnKG's sequential calls, "
            f"SCG {setting.num_candidates} candidates; {setting.num_test} test field(s); "
            f"estimate = ensemble mean (SMC: weighted)"
        ),
        "hyper-parameters ("
        + (
            f"tuned on a validation field at noise {setting.noise_levels[0]:g}"
            if setting.tune
            else "defaults, not tuned"
        )
        + "): "
        + ", ".join(f"{m} {v:g}" for m, v in chosen.items())
        + " (enkg/eki: step scale, dps: zeta, smc: likelihood std, at least the noise)",
    ]
    if total is not None:
        notes.append(f"total {total:.0f} s including data, prior and tuning")
    return title, RESULT_HEADERS, table, notes


def rows_table(setting: Setting, rows: list, chosen: dict, quick: bool = False) -> str:
    """The comparison as one Markdown table with its title and notes."""
    title, headers, table, notes = results_table(setting, rows, chosen, quick)
    return "\n".join([f"## {title}", "", *notes, "", format_table(headers, table)])


def ratio_lines(setting: Setting, rows: list) -> list[str]:
    """EnKG's error over EKI's at each noise level (the paper's headline comparison)."""
    lines = []
    for noise in setting.noise_levels:
        by = {r["method"]: r["rel_l2"] for r in rows if r["noise"] == noise}
        if "enkg" in by and "eki" in by:
            lines.append(
                f"noise {noise:g}: EnKG/EKI error ratio {by['enkg'] / by['eki']:.2f} "
                "(paper: 0.12/0.58 = 0.21)"
            )
    return lines


# ------------------------------------------------------------------------------------ identifiability

IDENTIFIABILITY_HEADERS = [
    "grid",
    "observed",
    "energy >= Nyquist",
    "interp T=0 rel L2",
    "lsq misfit",
    "lsq rel L2",
    "lsq s",
]


def band_limited(y: torch.Tensor, size: int) -> torch.Tensor:
    """Fourier interpolation of (B, 1, m, m) samples to (B, 1, size, size)."""
    m = y.shape[-1]
    h = m // 2
    yh = torch.fft.rfft2(y[:, 0], norm="forward")
    full = torch.zeros(y.shape[0], size, size // 2 + 1, dtype=yh.dtype)
    full[:, :h, : h + 1], full[:, -h:, : h + 1] = yh[:, :h, : h + 1], yh[:, -h:, : h + 1]
    return torch.fft.irfft2(full, s=(size, size), norm="forward")[:, None]


def identifiability_row(
    size: int, downsample: int, dt: float, num_fields: int, iterations: int, setting: Setting | None = None
) -> list:
    """Prior-free facts at one grid: the energy share beyond the observation's Nyquist wavenumber, the error
    of band-limited interpolation of the subsampled initial field, and least squares (Adam, lr 0.1, from 0,
    autograd through the solver): its relative misfit, its relative L2 and its seconds."""
    problem = dataclasses.replace(setting or FULL, size=size, dt=dt, downsample=downsample).problem(0.0)
    g = torch.Generator().manual_seed(10_000)
    truth = problem.sample_fields(num_fields, g)
    ky, kx = wavenumbers(size, size)
    energy = torch.fft.rfft2(truth[:, 0], norm="ortho").abs().pow(2).mean(0)
    energy[:, 1 : (size + 1) // 2] *= 2  # rfft2 stores half the kx modes
    nyquist = size // (2 * downsample)
    beyond = float(energy[(kx.abs() >= nyquist) | (ky.abs() >= nyquist)].sum() / energy.sum())
    interp = float(relative_l2(band_limited(truth[..., ::downsample, ::downsample], size), truth).mean())
    y = problem.forward.measure(truth, g)
    x = torch.zeros_like(truth, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.1)
    t0 = time.perf_counter()
    for _ in range(iterations):
        loss = (problem.forward.simulate(x) - y).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        misfit = float(
            ((problem.forward.simulate(x) - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)).mean()
        )
        rel = float(relative_l2(x, truth).mean())
    return [f"{size}x{size}", f"every {downsample}", beyond, interp, misfit, rel, time.perf_counter() - t0]


def identifiability_notes(num_fields: int, iterations: int, dt: float = FULL.dt) -> list[str]:
    return [
        (
            f"{num_fields} test fields (seed 10000), dt = {dt:g} x 32 / grid, noise 0; least squares: "
            f"{iterations} Adam steps (lr 0.1) from 0 through the differentiable solver"
        )
    ]
