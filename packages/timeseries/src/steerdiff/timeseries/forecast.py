"""Predict: forecasting and imputation with one unconditional model, by self-guided sampling.

Everything is one operation, :func:`complete`: given windows with NaN where values are unknown (the future,
missing context points), scale them by their observed context (as the model was trained), sample the whole
window with self-guidance towards the observed entries (every channel, lags included), and scale back.
Forecasting is ``complete`` on history + NaN future; imputation is ``complete`` on a window with NaN gaps.
The missing-value scenarios of the paper (random missing, blackout at the start or at the end of the
context) only change which context points are NaN.

Speed and memory: the sampler walks every row of every window together (its random draws do not depend on how
the network is called), and the network (with the backward pass of self-guidance) sees at most
:func:`chunk_rows` rows per call, so memory stays bounded whatever the number of windows and paths; the result
is the same for every chunk size. Unguided sampling runs under ``torch.inference_mode``.
"""

from __future__ import annotations

import contextlib

import torch

from steerdiff.core.denoiser import Denoiser, expand_sigma
from steerdiff.core.sampling import sample

from .data import WindowSpec, lagged, scale_by_context
from .guidance import GUIDANCES, self_guidance
from .model import NUM_STEPS, TSDiff

__all__ = [
    "ROW_BUDGET",
    "SCENARIOS",
    "ForecastRangeWarning",
    "GuidanceDiverged",
    "RowChunks",
    "chunk_rows",
    "complete",
    "forecast",
    "impute",
    "missing_mask",
    "out_of_range",
    "with_missing",
]

SCENARIOS = ("none", "random", "blackout_start", "blackout_end")
# rows x window length x hidden channels of one network call: 2**21 floats (8 MiB) per activation tensor;
# 40 windows x 16 paths at context 360 (hidden 64): 85 rows a call, under 1 GiB with self-guidance's backward
ROW_BUDGET = 2**21


def chunk_rows(model: TSDiff, num_samples: int, batch_size: int | None = None) -> int:
    """Rows per network call: ``batch_size`` windows of ``num_samples`` rows each when given, else as many rows
    as fit :data:`ROW_BUDGET` (rows x window length x hidden channels)."""
    if batch_size is not None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive number of windows, got {batch_size}")
        return int(batch_size) * num_samples
    width = model.spec.length * max(int(getattr(model.config, "hidden_channels", 1)), 1)
    return max(1, ROW_BUDGET // width)


class RowChunks(Denoiser):
    """A denoiser evaluated on at most ``rows`` rows per network call: the same x0-hat, bounded memory."""

    def __init__(self, denoiser, rows: int):
        torch.nn.Module.__init__(self)
        self.inner = denoiser
        self.rows = int(rows)
        self.parametrization = getattr(denoiser, "parametrization", "x0")
        self.sigma_data = getattr(denoiser, "sigma_data", 1.0)

    def forward(self, x: torch.Tensor, sigma, **cond) -> torch.Tensor:
        n, r = x.shape[0], self.rows
        if not isinstance(self.inner, Denoiser):  # any other callable takes sigma of shape (B,)
            sigma = expand_sigma(sigma, x)
        if n <= r:
            return self.inner(x, sigma, **cond)
        return torch.cat(
            [
                self.inner(
                    x[a : a + r],
                    _rows(sigma, a, a + r, n),
                    **{k: _rows(v, a, a + r, n) for k, v in cond.items()},
                )
                for a in range(0, n, r)
            ]
        )


def _rows(value, start: int, stop: int, total: int):
    if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == total:
        return value[start:stop]
    return value


@contextlib.contextmanager
def _frozen(module):
    """No weight gradients while sampling: self-guidance differentiates w.r.t. the sample only."""
    params = (
        [p for p in module.parameters() if p.requires_grad] if isinstance(module, torch.nn.Module) else []
    )
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class GuidanceDiverged(ValueError):
    """Self-guided sampling produced NaN/inf: the guidance scale is too large for this model and grid."""


class ForecastRangeWarning(UserWarning):
    """Forecasts that leave any plausible range of their context (see :func:`out_of_range`)."""


def out_of_range(
    history: torch.Tensor, samples: torch.Tensor, context_length: int, margin: float = 0.5
) -> dict:
    """Which windows' median forecast leaves the plausible range of its observed context.

    The range is the context's [min, max] widened by ``margin`` times its width on both sides (a flat context:
    a width of 10 % of its level). Returns ``{"windows": [indices], "fraction", "worst": {"window", "value", "low",
    "high"}}`` (``worst``: the point furthest outside, None when every window stays inside).
    """
    ctx = torch.as_tensor(history, dtype=torch.float64)[:, -context_length:]
    obs = torch.isfinite(ctx)
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    lo = torch.where(obs, ctx, inf).amin(1)
    hi = torch.where(obs, ctx, -inf).amax(1)
    width = torch.maximum(hi - lo, 0.1 * torch.maximum(lo.abs(), hi.abs()))
    low, high = lo - margin * width, hi + margin * width
    median = torch.as_tensor(samples, dtype=torch.float64).median(1).values  # (N, pred)
    excess = torch.maximum(low[:, None] - median, median - high[:, None]).clamp_min(0)
    excess = torch.where(torch.isfinite(excess), excess, torch.zeros_like(excess))
    bad = (excess > 0).any(1).nonzero().flatten().tolist()
    worst = None
    if bad:
        flat = int(excess.flatten().argmax())
        w, t = divmod(flat, excess.shape[1])
        worst = {"window": w, "value": float(median[w, t]), "low": float(low[w]), "high": float(high[w])}
    return {"windows": bad, "fraction": len(bad) / max(len(median), 1), "worst": worst}


def range_warning(report: dict, guidance: str, scale: float, tuned: bool) -> str | None:
    """A one-line warning with the fix for an :func:`out_of_range` report (None when nothing left)."""
    if not report["windows"]:
        return None
    w = report["worst"]
    fix = (
        "this scale was chosen on the validation windows, so the model itself may need more training"
        if tuned
        else "choose the scale on validation windows (train with --validation-windows >= 1) or pin a smaller "
        "--scale"
    )
    alt = " or use quantile guidance (its pull is bounded)" if guidance == "mse" else ""
    return (
        f"{guidance} self-guidance at scale {scale:g}: the median forecast of {len(report['windows'])} of "
        f"{round(len(report['windows']) / report['fraction'])} windows leaves the plausible range of its context "
        f"(window {w['window']} reaches {w['value']:.4g}, range [{w['low']:.4g}, {w['high']:.4g}]); {fix}{alt}"
    )


def missing_mask(
    scenario: str, n: int, context_length: int, k: int | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(n, context_length) bool, True where a context point is missing.

    ``random``: k points drawn uniformly without replacement per row; ``blackout_start``: the first k;
    ``blackout_end``: the last k (right before the forecast); ``none``: nothing. k defaults to half the
    context, as in the paper.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown missing-value scenario {scenario!r}; choose one of {list(SCENARIOS)}")
    k = context_length // 2 if k is None else int(k)
    if not 0 <= k < context_length:
        raise ValueError(f"k must be in [0, {context_length}) so that some context stays observed, got {k}")
    mask = torch.zeros(n, context_length, dtype=torch.bool)
    if scenario == "random":
        order = torch.rand(n, context_length, generator=generator).argsort(dim=1)
        mask.scatter_(1, order[:, :k], True)
    elif scenario == "blackout_start":
        mask[:, :k] = True
    elif scenario == "blackout_end":
        mask[:, context_length - k :] = True
    return mask


def with_missing(history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A copy of ``history`` (N, max_lag + context) with the masked context points (N, context) set to NaN."""
    out = history.clone().float()
    ctx = mask.shape[1]
    out[:, -ctx:] = out[:, -ctx:].masked_fill(mask.to(out.device), float("nan"))
    return out


def _check_values(y: torch.Tensor, spec: WindowSpec, what: str) -> torch.Tensor:
    y = torch.as_tensor(y)
    if y.ndim == 1:
        y = y[None]
    if y.ndim != 2 or y.shape[1] != spec.span:
        raise ValueError(
            f"{what} must have shape (N, {spec.span}) (lag history {spec.max_lag} + context "
            f"{spec.context_length} + prediction {spec.prediction_length}), got {tuple(y.shape)}"
        )
    if torch.isinf(y).any():
        raise ValueError(f"{what} contains inf; use NaN for unknown values")
    return y.float()


def complete(
    model: TSDiff,
    y: torch.Tensor,
    num_samples: int = 100,
    guidance: str = "quantile",
    scale: float = 4.0,
    solver: str = "ddpm",
    num_steps: int = NUM_STEPS,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    **solver_options,
) -> torch.Tensor:
    """Sample full windows given ``y`` (N, max_lag + L) with NaN where unknown: (N, num_samples, L).

    ``guidance``: "quantile" (TSDiff-Q), "mse" (TSDiff-MS) or "none" (unconditional). ``batch_size`` bounds
    the windows whose rows go through the network at once (each brings ``num_samples`` rows); by default as
    many rows as fit :data:`ROW_BUDGET`. It changes memory and speed, not the result. Returned in data units,
    channel 0.
    """
    spec = model.spec
    y = _check_values(y, spec, "y")
    if guidance not in GUIDANCES:
        raise ValueError(f"unknown guidance {guidance!r}; choose one of {list(GUIDANCES)}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    rows = chunk_rows(model, num_samples, batch_size)
    scaled, loc, scale_ = scale_by_context(y, spec)  # loc, scale_: (N, 1)
    device = model.device
    obs = lagged(scaled, spec).to(device)  # (N, C, L), NaN = unknown
    sigmas = model.sigmas(num_steps)
    n = y.shape[0]
    # one draw for every row, whatever the chunking: the same seed gives the same paths at any batch_size
    x = sigmas[0].item() * torch.randn(
        (n * num_samples, spec.channels, spec.length), generator=generator, device=device
    )
    steer = [] if guidance == "none" else [self_guidance(obs, scale, guidance, num_samples, chunk_rows=rows)]
    mode = torch.inference_mode() if guidance == "none" else contextlib.nullcontext()
    try:
        with _frozen(model.denoiser), mode:
            res = sample(
                RowChunks(model.denoiser, rows),
                x,
                sigmas,
                solver,
                guidance=steer,
                generator=generator,
                progress=progress,
                **solver_options,
            )
            paths = res.x[:, 0].reshape(n, num_samples, spec.length).cpu()
            finite = bool(torch.isfinite(res.x).all())
    except ValueError as e:
        if "NaN or inf" not in str(e):
            raise
        paths, finite = None, False
    if not finite:
        raise GuidanceDiverged(
            f"{guidance} self-guidance at scale {scale} diverged (NaN/inf) with {num_steps} {solver} "
            "steps; lower the scale, use more steps, or train the model longer (an under-trained network "
            "has a large Jacobian, which the sum-of-squares guidance amplifies; the quantile variant is "
            "bounded)"
        )
    return paths * scale_[..., None] + loc[..., None]


def forecast(model: TSDiff, history: torch.Tensor, **options) -> torch.Tensor:
    """Sample paths of the next ``prediction_length`` points: history (N, max_lag + context) -> (N, S, pred).

    NaN in the history marks missing points (the model fills them in through self-guidance)."""
    spec = model.spec
    history = torch.as_tensor(history, dtype=torch.float32)
    if history.ndim == 1:
        history = history[None]
    if history.ndim != 2 or history.shape[1] != spec.history_length:
        raise ValueError(
            f"history must have shape (N, {spec.history_length}) (lag history {spec.max_lag} + "
            f"context {spec.context_length}), got {tuple(history.shape)}"
        )
    future = torch.full((history.shape[0], spec.prediction_length), float("nan"))
    return complete(model, torch.cat([history, future], 1), **options)[..., spec.context_length :]


def impute(model: TSDiff, y: torch.Tensor, **options) -> torch.Tensor:
    """Fill the NaNs of windows (N, max_lag + L): samples (N, S, L) that keep the observed values exactly."""
    spec = model.spec
    y = _check_values(y, spec, "y")
    samples = complete(model, y, **options)
    obs = y[:, spec.max_lag :]
    return torch.where(torch.isfinite(obs)[:, None], obs[:, None], samples)
