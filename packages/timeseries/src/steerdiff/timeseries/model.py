"""TSDiff's model: one unconditional DDPM over windows scaled by their context (mean scaling by default), with
an S4D backbone, trained by the core.

TSDiff (Kollovieh et al. 2023) uses 100 discrete steps with betas linear from 1e-4 to 0.1; in the core's
continuous, sigma-space convention that is ``VPLinear(beta_min=0.01, beta_max=10)`` (a discrete schedule of
T steps with betas in [b0, b1] is the continuous (b0 T, b1 T)) walked on 100 steps uniform in t. The network
predicts the noise (eps parametrization), as in the paper.

``init_skip`` (an option of the TSDiff code, on by default here) makes the network residual, eps_hat = x_t +
F. Self-guidance differentiates x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), whose Jacobian
(I - sqrt(1 - abar_t) J_eps) / sqrt(abar_t) multiplies any error of J_eps by 1/sqrt(abar_T) = 13 at t = T. A
plain network must learn eps_hat = x_t to that precision at high noise; with a few thousand CPU training steps
it does not, and TSDiff-MS at s = 4 then diverged in the first steps. With the skip the network only has to
learn F = 0 there, and its x0-hat Jacobian at t = T came out 15x smaller (see docs/timeseries/results.md).

A trained model is a model bundle (the core's format, domain ``timeseries``): ``config.json`` with the window,
the backbone and the data split the model was trained with, and ``model.safetensors`` (the EMA weights).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from steerdiff.core.bundle import BundleError, load_pretrained, save_pretrained
from steerdiff.core.denoiser import Denoiser
from steerdiff.core.nets import build_network
from steerdiff.core.schedules import VPLinear, sigma_grid
from steerdiff.core.training import TrainConfig, TrainResult, train

from .data import Series, WindowSpec, parse_freq

__all__ = ["DOMAIN", "NUM_STEPS", "SCHEDULE", "DataSplit", "TSDiff", "TSDiffConfig"]

SCHEDULE = VPLinear(beta_min=0.01, beta_max=10.0)
NUM_STEPS = 100
DOMAIN = "timeseries"
WINDOW_KEYS = ("context_length", "prediction_length", "lags", "freq", "scaling")
BACKBONE_KEYS = ("hidden_channels", "num_blocks", "d_state", "emb_dim", "init_skip")


@dataclass
class TSDiffConfig:
    """Window and backbone of a TSDiff model (saved in the bundle's ``config.json``)."""

    context_length: int
    prediction_length: int
    lags: tuple[int, ...] = ()
    freq: str = "H"
    hidden_channels: int = 64
    num_blocks: int = 3
    d_state: int = 64
    emb_dim: int = 128
    init_skip: bool = True  # the network adds its input to its output; see the module docstring
    scaling: str = "mean"  # how windows are scaled by their context (data.SCALINGS)

    def __post_init__(self):
        self.lags = tuple(int(lag) for lag in self.lags)
        self.freq = str(parse_freq(self.freq))
        WindowSpec(
            self.context_length, self.prediction_length, self.lags, self.scaling
        )  # validates the window

    @property
    def spec(self) -> WindowSpec:
        return WindowSpec(self.context_length, self.prediction_length, self.lags, self.scaling)

    def build_denoiser(self) -> Denoiser:
        net = build_network(
            "s4d",
            in_channels=self.spec.channels,
            hidden_channels=self.hidden_channels,
            num_blocks=self.num_blocks,
            d_state=self.d_state,
            emb_dim=self.emb_dim,
            init_skip=self.init_skip,
            bidirectional=True,
        )
        return Denoiser(net, "eps")


@dataclass
class DataSplit:
    """The data a model was trained with and how each series was cut (saved in the bundle).

    The last ``test_windows`` x ``prediction_length`` points of every series are the rolling test windows, the
    ``validation_windows`` x ``prediction_length`` points before them the validation windows; training used
    everything before. ``series`` records each series' ``item_id``, ``length``, ``train_end`` (first point not
    trained on) and ``test_start`` (first test point), so later runs can check they see the same data.
    """

    source: str | None = None  # a bundled dataset name, gluonts:<name> or a file path
    freq: str | None = None
    test_windows: int = 1
    validation_windows: int = 0
    series: list[dict] = field(default_factory=list)
    read: dict = field(default_factory=dict)  # how the source file was read: freq, start, header

    def __post_init__(self):
        if int(self.test_windows) < 1 or int(self.validation_windows) < 0:
            raise ValueError(
                f"test_windows must be >= 1 and validation_windows >= 0, got {self.test_windows}, "
                f"{self.validation_windows}"
            )
        self.test_windows, self.validation_windows = int(self.test_windows), int(self.validation_windows)

    @classmethod
    def of(
        cls,
        series: Sequence[Series],
        prediction_length: int,
        test_windows: int,
        validation_windows: int = 0,
        source: str | None = None,
        read: dict | None = None,
    ) -> DataSplit:
        """The split of ``series`` that holds out the last test (and validation) windows."""
        test, val = test_windows * prediction_length, validation_windows * prediction_length
        rows = [
            {
                "item_id": s.item_id,
                "length": len(s),
                "train_end": len(s) - test - val,
                "test_start": len(s) - test,
                "fingerprint": fingerprint(s.target[: len(s) - test - val]),
            }
            for s in series
        ]
        freq = str(series[0].freq) if series else None
        return cls(source, freq, test_windows, validation_windows, rows, dict(read or {}))

    def check_unseen(self, item_ids: Sequence[str], starts: Sequence[int], series: Sequence[Series]) -> None:
        """Refuse windows whose forecast starts (``starts``: positions in the series of ``item_ids``) fall in the
        part of a series the model was trained or validated on, and series whose training part differs from
        the data the model was trained on (so that positions would not mean the same points)."""
        known = {row["item_id"]: row for row in self.series}
        by_id = {s.item_id: s for s in series}
        checked = set()
        for item, t0 in zip(item_ids, starts, strict=True):
            row = known.get(item)
            if row is None:
                continue  # a series the model never saw: nothing of it was trained on
            if item not in checked:
                checked.add(item)
                s = by_id.get(item)
                fp = row.get("fingerprint")
                if (
                    s is not None
                    and fp is not None
                    and (len(s) < row["train_end"] or fingerprint(s.target[: row["train_end"]]) != fp)
                ):
                    raise ValueError(
                        f"series {item!r} is not the data the model was trained on (its first "
                        f"{row['train_end']} points differ), so the held-out windows cannot be located; give the "
                        "training data (omit --data), or rename the series if it is a new one"
                    )
            if t0 < row["test_start"]:
                seen = "trained" if t0 < row["train_end"] else "validated (its scale was chosen there)"
                raise ValueError(
                    f"a window of series {item!r} forecasts from point {t0}, which the model was {seen} on: "
                    f"its held-out test windows start at point {row['test_start']} ({self.test_windows} windows); "
                    f"score at most {self.test_windows} test windows (omit --test-windows), or train with more "
                    "--test-windows"
                )


def fingerprint(values) -> str:
    """A short hash of float64 values (rounded to 6 decimals, so that a text round trip matches)."""
    import numpy as np

    v = np.round(np.asarray(values, dtype=np.float64), 6) + 0.0  # + 0.0: -0.0 hashes as 0.0
    return hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()[:16]


class TSDiff:
    """A TSDiff model: config + denoiser (x0-hat in scaled units). Train with :meth:`fit`."""

    schedule = SCHEDULE

    def __init__(self, config: TSDiffConfig, denoiser=None, split: DataSplit | None = None):
        """``denoiser``: any callable (x, sigma) -> x0-hat on (B, channels, L), e.g. an exact analytic one;
        by default the config's untrained S4D network. ``split``: the data the model is trained with."""
        self.config = config
        self.denoiser = denoiser if denoiser is not None else config.build_denoiser()
        self.split = split
        # settings chosen on the validation windows: {"quantile": {"scale": s, ...}, "mse": {...}, "scaling": ...}
        self.tuned: dict = {}

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

    def fit(
        self,
        windows: torch.Tensor,
        config: TrainConfig | None = None,
        out_dir=None,
        *,
        progress: bool = True,
        device=None,
    ) -> TrainResult:
        """Train on scaled windows (N, channels, L) from :func:`data.training_windows` with this model's spec;
        the model then holds the EMA weights. With ``out_dir``, resumable training checkpoints go to
        ``out_dir/checkpoint`` (a second call with the same folder resumes)."""
        spec = self.spec
        if windows.ndim != 3 or windows.shape[1:] != (spec.channels, spec.length):
            raise ValueError(
                f"windows must have shape (N, {spec.channels}, {spec.length}) for this config "
                f"(channels = 1 + {len(spec.lags)} lags, length = context + prediction), got "
                f"{tuple(windows.shape)}; build them with data.training_windows(series, spec)"
            )
        result = train(
            self.denoiser,
            self.schedule,
            windows,
            config or TrainConfig(),
            out_dir=out_dir,
            progress=progress,
            device=device,
        )
        self.denoiser = result.ema.requires_grad_(False).eval()
        return result

    def bundle_config(self) -> dict:
        """The bundle's domain section: window, backbone and data split."""
        cfg = dataclasses.asdict(self.config)
        cfg["lags"] = list(cfg["lags"])
        return {
            "window": {k: cfg[k] for k in WINDOW_KEYS},
            "backbone": {k: cfg[k] for k in BACKBONE_KEYS},
            "data": dataclasses.asdict(self.split) if self.split is not None else None,
            "tuned": self.tuned,
        }

    def guidance_scale(self, guidance: str, default: float = 4.0) -> float:
        """The self-guidance scale chosen on the validation windows for ``guidance``, else ``default``."""
        entry = self.tuned.get(guidance)
        return float(entry["scale"]) if isinstance(entry, dict) and "scale" in entry else default

    def save_pretrained(self, path) -> Path:
        """Write the model as a bundle (config.json + model.safetensors) to the folder ``path``,
        atomically."""
        if not isinstance(self.denoiser, Denoiser):
            raise ValueError(
                "only a model with a network denoiser (a steerdiff Denoiser) can be saved; this one "
                f"holds {type(self.denoiser).__name__}"
            )
        return save_pretrained(
            path, domain=DOMAIN, config=self.bundle_config(), denoiser=self.denoiser, schedule=self.schedule
        )

    @classmethod
    def from_pretrained(cls, path, device="cpu") -> TSDiff:
        """Load a bundle written by :meth:`save_pretrained` (``device="auto"``: CUDA when present)."""
        bundle = load_pretrained(path, DOMAIN, device=device)
        section = bundle.config
        try:
            config = TSDiffConfig(**section["window"], **section["backbone"])
            split = DataSplit(**section["data"]) if section.get("data") else None
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(
                f"{Path(path) / 'config.json'}: the timeseries section is incomplete or corrupt "
                f"({err}); train the model again"
            ) from None
        if bundle.denoiser is None:
            raise BundleError(f"{path} holds no model weights; train the model again")
        model = cls(config, bundle.denoiser, split)
        model.tuned = dict(section.get("tuned") or {})
        if bundle.schedule is not None:
            model.schedule = bundle.schedule
        return model
