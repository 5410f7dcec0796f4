"""TSDiff's model: one unconditional DDPM over windows scaled by their context (mean scaling by default), with
an S4D backbone, trained by the core.

TSDiff (Kollovieh et al. 2023) uses 100 discrete steps with betas linear from 1e-4 to 0.1; in the core's
continuous, sigma-space convention that is ``VPLinear(beta_min=0.01, beta_max=10)`` (a discrete schedule of
T steps with betas in [b0, b1] is the continuous (b0 T, b1 T)) walked on 100 steps uniform in t. The network
predicts the noise (eps parametrization), as in the paper.

``init_skip`` (an option of the TSDiff code, on by default here) makes the network residual, eps_hat = x_t + F.
Self-guidance differentiates x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), whose Jacobian
(I - sqrt(1 - abar_t) J_eps) / sqrt(abar_t) multiplies any error of J_eps by 1/sqrt(abar_T) = 13 at t = T. A
plain network must learn eps_hat = x_t to that precision at high noise; with a few thousand CPU training steps
it does not, and TSDiff-MS at s = 4 then diverged in the first steps. With the skip the network only has to
learn F = 0 there, and its x0-hat Jacobian at t = T came out 15x smaller (README, "Known limits"). A trained model is a directory: the core's
checkpoint (``checkpoint/``: config.json + safetensors) and ``tsdiff.json`` (window, lags, frequency).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from steerdiff.core.checkpoint import load_denoiser, save_checkpoint
from steerdiff.core.denoiser import Denoiser
from steerdiff.core.io import write_json
from steerdiff.core.nets import build_network
from steerdiff.core.schedules import VPLinear, sigma_grid
from steerdiff.core.training import TrainConfig, TrainResult, train

from .data import WindowSpec, parse_freq

__all__ = ["NUM_STEPS", "SCHEDULE", "TSDiff", "TSDiffConfig"]

SCHEDULE = VPLinear(beta_min=0.01, beta_max=10.0)
NUM_STEPS = 100
META = "tsdiff.json"


@dataclass
class TSDiffConfig:
    """Window and backbone of a TSDiff model (saved as ``tsdiff.json`` beside the weights)."""

    context_length: int
    prediction_length: int
    lags: tuple[int, ...] = ()
    freq: str = "H"
    hidden_channels: int = 64
    num_blocks: int = 3
    d_state: int = 64
    emb_dim: int = 128
    init_skip: bool = True   # the network adds its input to its output; see the module docstring
    scaling: str = "mean"    # how windows are scaled by their context (data.SCALINGS)

    def __post_init__(self):
        self.lags = tuple(int(lag) for lag in self.lags)
        self.freq = str(parse_freq(self.freq))
        WindowSpec(self.context_length, self.prediction_length, self.lags, self.scaling)  # validates the window

    @property
    def spec(self) -> WindowSpec:
        return WindowSpec(self.context_length, self.prediction_length, self.lags, self.scaling)

    def build_denoiser(self) -> Denoiser:
        net = build_network("s4d", in_channels=self.spec.channels, hidden_channels=self.hidden_channels,
                            num_blocks=self.num_blocks, d_state=self.d_state, emb_dim=self.emb_dim,
                            init_skip=self.init_skip, bidirectional=True)
        return Denoiser(net, "eps")


_write_json_atomic = write_json


class TSDiff:
    """A TSDiff model: config + denoiser (x0-hat in scaled units). Train with :meth:`fit`."""

    schedule = SCHEDULE

    def __init__(self, config: TSDiffConfig, denoiser=None):
        """``denoiser``: any callable (x, sigma) -> x0-hat on (B, channels, L), e.g. an exact analytic one;
        by default the config's untrained S4D network."""
        self.config = config
        self.denoiser = denoiser if denoiser is not None else config.build_denoiser()

    @property
    def spec(self) -> WindowSpec:
        return self.config.spec

    @property
    def device(self) -> torch.device:
        params = self.denoiser.parameters() if isinstance(self.denoiser, torch.nn.Module) else iter(())
        p = next(params, None)
        return p.device if p is not None else torch.device("cpu")

    def sigmas(self, num_steps: int = NUM_STEPS) -> torch.Tensor:
        """The sampling grid: ``num_steps`` levels uniform in diffusion time (TSDiff's DDPM for 100)."""
        return sigma_grid(self.schedule, num_steps, "uniform_t")

    def fit(self, windows: torch.Tensor, config: TrainConfig | None = None, out_dir=None, *,
            progress: bool = True, device=None) -> TrainResult:
        """Train on scaled windows (N, channels, L) from :func:`data.training_windows` with this model's spec;
        the model then holds the EMA weights."""
        spec = self.spec
        if windows.ndim != 3 or windows.shape[1:] != (spec.channels, spec.length):
            raise ValueError(f"windows must have shape (N, {spec.channels}, {spec.length}) for this config "
                             f"(channels = 1 + {len(spec.lags)} lags, length = context + prediction), got "
                             f"{tuple(windows.shape)}; build them with data.training_windows(series, spec)")
        if out_dir is not None:
            _write_json_atomic(Path(out_dir) / META, dataclasses.asdict(self.config))
        result = train(self.denoiser, self.schedule, windows, config or TrainConfig(), out_dir=out_dir,
                       progress=progress, device=device)
        self.denoiser = result.ema.requires_grad_(False).eval()
        return result

    def save(self, out_dir) -> Path:
        """Write ``tsdiff.json`` and a checkpoint of the current weights (atomically) to ``out_dir``."""
        out = Path(out_dir)
        save_checkpoint(out / "checkpoint", self.denoiser, schedule=self.schedule, ema=self.denoiser)
        _write_json_atomic(out / META, dataclasses.asdict(self.config))
        return out

    @classmethod
    def load(cls, path, device="cpu") -> TSDiff:
        path = Path(path)
        if not (path / META).exists():
            raise FileNotFoundError(f"{path / META} not found: {path} is not a steerdiff-timeseries model "
                                    "directory (train one with `steerdiff-timeseries train --out DIR`)")
        config = TSDiffConfig(**json.loads((path / META).read_text()))
        return cls(config, load_denoiser(path, device=device))
