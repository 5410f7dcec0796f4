"""Noise schedules and step grids.

One convention for time, written down once. A sample at noise level ``sigma`` is

    x = x0 + sigma * n,        n ~ N(0, I)                       (the "sigma space" of EDM)

Every schedule — variance preserving (VP) or exploding (VE/EDM) — is expressed in this space. A VP
schedule with x_t = alpha_t x0 + s_t eps is the same process scaled: sigma = s_t / alpha_t and
x = x_t / alpha_t, so ``alpha(sigma) = 1 / sqrt(1 + sigma^2)`` converts back. Solvers, denoisers and
guidance only ever see sigma; a schedule decides three things:

* the range (sigma_min, sigma_max) and the map between diffusion time t in [0, 1] and sigma,
* the distribution of sigma during training,
* the prior at sigma_max: ``N(0, prior_std^2 I)`` in sigma space.

Step grids (:func:`sigma_grid`) are decreasing tensors of ``num_steps + 1`` sigmas ending in 0.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

__all__ = [
    "Schedule",
    "VPLinear",
    "VPCosine",
    "VE",
    "EDM",
    "SCHEDULES",
    "get_schedule",
    "sigma_grid",
    "karras_sigmas",
    "SPACINGS",
]


class Schedule:
    """Base class: subclasses define ``sigma(t)``, ``t_of_sigma(sigma)`` and the training distribution."""

    name: str = ""
    variance_preserving: bool = False
    sigma_min: float
    sigma_max: float

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def t_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def t_min(self) -> float:
        return float(self.t_of_sigma(torch.tensor(self.sigma_min, dtype=torch.float64)))

    @property
    def t_max(self) -> float:
        return float(self.t_of_sigma(torch.tensor(self.sigma_max, dtype=torch.float64)))

    def alpha(self, sigma: torch.Tensor) -> torch.Tensor:
        """Scale between sigma space and the schedule's own space (x_own = alpha * x_sigma)."""
        if self.variance_preserving:
            return 1.0 / torch.sqrt(1.0 + sigma**2)
        return torch.ones_like(sigma)

    @property
    def prior_std(self) -> float:
        """Standard deviation of the initial noise at sigma_max, in sigma space."""
        if self.variance_preserving:  # x_T ~ N(0, I) in VP space, i.e. N(0, 1 + sigma^2) here
            return math.sqrt(1.0 + self.sigma_max**2)
        return self.sigma_max

    def sample_training_sigma(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Noise levels for denoising score matching: t ~ U(t_min, t_max) unless overridden.

        ``generator`` must live on ``device`` (torch's rule for random draws)."""
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        t = self.t_min + (self.t_max - self.t_min) * u
        return self.sigma(t).float()

    def to_dict(self) -> dict:
        """JSON-ready description; ``get_schedule(**d)`` rebuilds the schedule."""
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}  # type: ignore[arg-type]


@dataclass
class VPLinear(Schedule):
    """Continuous DDPM schedule (Song et al. 2021): beta(t) linear from beta_min to beta_max.

    beta_min=0.1, beta_max=20 is the continuous limit of DDPM's 1000 steps of beta in [1e-4, 0.02];
    a discrete schedule of T steps with betas in [b0, b1] corresponds to (b0 * T, b1 * T).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    eps: float = 1e-3
    name = "vp_linear"
    variance_preserving = True

    def __post_init__(self):
        if not 0 <= self.beta_min < self.beta_max:
            raise ValueError(f"VPLinear needs 0 <= beta_min < beta_max, got {self.beta_min}, {self.beta_max}")
        self.sigma_min = float(self.sigma(torch.tensor(self.eps, dtype=torch.float64)))
        self.sigma_max = float(self.sigma(torch.tensor(1.0, dtype=torch.float64)))

    def sigma(self, t):
        t = torch.as_tensor(t)
        return torch.sqrt(torch.expm1(0.5 * (self.beta_max - self.beta_min) * t**2 + self.beta_min * t))

    def t_of_sigma(self, sigma):
        sigma = torch.as_tensor(sigma)
        a = 0.5 * (self.beta_max - self.beta_min)
        c = torch.log1p(sigma**2)
        return (-self.beta_min + torch.sqrt(self.beta_min**2 + 4 * a * c)) / (2 * a)


@dataclass
class VPCosine(Schedule):
    """Cosine schedule (Nichol & Dhariwal 2021): alpha_bar(t) = f(t)/f(0), f = cos^2((t+s)/(1+s) pi/2).

    alpha_bar reaches 0 at t=1, so the range is cut at ``sigma_max`` (default 80, alpha_bar ~ 1.6e-4).
    """

    s: float = 0.008
    sigma_max: float = 80.0
    eps: float = 1e-3
    name = "vp_cosine"
    variance_preserving = True

    def __post_init__(self):
        if self.sigma_max <= 0:
            raise ValueError(f"VPCosine needs sigma_max > 0, got {self.sigma_max}")
        self.sigma_min = float(self.sigma(torch.tensor(self.eps, dtype=torch.float64)))

    def _angle(self, t):
        return (t + self.s) / (1 + self.s) * (math.pi / 2)

    def sigma(self, t):
        t = torch.as_tensor(t)
        f0 = math.cos(self.s / (1 + self.s) * math.pi / 2) ** 2
        alpha_bar = torch.cos(self._angle(t)) ** 2 / f0
        return torch.sqrt(1.0 / alpha_bar - 1.0)

    def t_of_sigma(self, sigma):
        sigma = torch.as_tensor(sigma)
        f0 = math.cos(self.s / (1 + self.s) * math.pi / 2) ** 2
        alpha_bar = 1.0 / (1.0 + sigma**2)
        angle = torch.arccos(torch.sqrt(alpha_bar * f0))
        return angle / (math.pi / 2) * (1 + self.s) - self.s


@dataclass
class VE(Schedule):
    """Variance exploding (Song et al. 2021): sigma(t) = sigma_min (sigma_max / sigma_min)^t."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    name = "ve"

    def __post_init__(self):
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"VE needs 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")

    def sigma(self, t):
        t = torch.as_tensor(t)
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def t_of_sigma(self, sigma):
        sigma = torch.as_tensor(sigma)
        return torch.log(sigma / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)


@dataclass
class EDM(Schedule):
    """Karras et al. 2022: sigma(t) = t, training ln sigma ~ N(p_mean, p_std^2)."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    p_mean: float = -1.2
    p_std: float = 1.2
    name = "edm"

    def __post_init__(self):
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"EDM needs 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")

    def sigma(self, t):
        return torch.as_tensor(t)

    def t_of_sigma(self, sigma):
        return torch.as_tensor(sigma)

    def sample_training_sigma(self, n, generator=None, device=None):
        z = torch.randn(n, generator=generator, device=device)
        return torch.exp(self.p_mean + self.p_std * z)


SCHEDULES: dict[str, type[Schedule]] = {"vp_linear": VPLinear, "vp_cosine": VPCosine, "ve": VE, "edm": EDM}


def get_schedule(name: str | dict | Schedule, **kwargs) -> Schedule:
    """A schedule by name (``vp_linear``, ``vp_cosine``, ``ve``, ``edm``) with its hyper-parameters,
    or from the dict that ``Schedule.to_dict()`` wrote."""
    if isinstance(name, dict):
        return get_schedule(**name)
    if isinstance(name, Schedule):
        return name
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](**kwargs)


SPACINGS = ("karras", "uniform_t", "log_snr")


def karras_sigmas(sigma_max: float, sigma_min: float, n: int, rho: float = 7.0) -> torch.Tensor:
    """n float64 noise levels from sigma_max to sigma_min, uniform in sigma^(1/rho) (EDM eq. 5)."""
    if n == 1:
        return torch.tensor([float(sigma_max)], dtype=torch.float64)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def sigma_grid(
    schedule: Schedule,
    num_steps: int,
    spacing: str = "karras",
    rho: float = 7.0,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
) -> torch.Tensor:
    """Decreasing float64 tensor of ``num_steps + 1`` noise levels, the last one 0.

    ``karras``: sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho;
    ``uniform_t``: t uniform between the schedule's t(sigma_max) and t(sigma_min);
    ``log_snr``: uniform in log sigma (= uniform in log-SNR, since SNR = 1/sigma^2).
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; choose one of {list(SPACINGS)}")
    lo = float(schedule.sigma_min if sigma_min is None else sigma_min)
    hi = float(schedule.sigma_max if sigma_max is None else sigma_max)
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {lo}, {hi}")
    n = num_steps
    if n == 1:
        sig = torch.tensor([hi], dtype=torch.float64)
    elif spacing == "karras":
        sig = karras_sigmas(hi, lo, n, rho)
    elif spacing == "log_snr":
        sig = torch.exp(torch.linspace(math.log(hi), math.log(lo), n, dtype=torch.float64))
    else:
        t_hi = schedule.t_of_sigma(torch.tensor(hi, dtype=torch.float64))
        t_lo = schedule.t_of_sigma(torch.tensor(lo, dtype=torch.float64))
        sig = schedule.sigma(torch.linspace(float(t_hi), float(t_lo), n, dtype=torch.float64))
    return torch.cat([sig, sig.new_zeros(1)])
