"""Inverse problems: an unknown field (B, 1, H, W), a forward model, a way to draw ground-truth fields.

* :class:`NavierStokesProblem` — the EnKG paper's task: recover the initial vorticity of 2-D Navier-Stokes
  on the torus from the final vorticity, subsampled by ``downsample`` and noised. Fields are Gaussian random
  fields evolved for ``spinup`` time units by the same solver (as in the paper), so they carry the flow's
  structure; those fields are both the training data of the prior and the ground truths.
* :class:`LinearProblem` — sparse, noisy point observations of a Gaussian random field: the prior is Gaussian
  with an exact denoiser and the posterior mean is known in closed form (an analytic check for solvers).
* :class:`SaturatedProblem` — a cheap nonlinear one: a saturating sensor tanh(blur(x) / level), subsampled.

``make_problem(name, **options)`` builds one by name (the CLI's entry point).
"""

from __future__ import annotations

import math

import torch

from .fields import GaussianRandomField
from .forward import ForwardModel
from .navier_stokes import NavierStokes2D

__all__ = [
    "PROBLEMS",
    "CustomProblem",
    "InverseProblem",
    "LinearProblem",
    "NavierStokesProblem",
    "SaturatedProblem",
    "make_problem",
]


class _Subsampled(ForwardModel):
    """Observe every ``stride``-th grid point of ``transform(x)``."""

    def __init__(self, name, transform, size, stride, **kwargs):
        if stride < 1 or size % stride:
            divisors = [d for d in range(1, size + 1) if size % d == 0]
            raise ValueError(
                f"the observation stride {stride} must be a positive divisor of the grid size {size}; "
                f"choose one of {divisors}"
            )
        m = size // stride
        super().__init__((1, size, size), (1, m, m), **kwargs)
        self.name, self.transform, self.stride = name, transform, stride

    def simulate(self, x):
        return self.transform(x)[..., :: self.stride, :: self.stride]


class InverseProblem:
    """Base: ``forward`` (a :class:`ForwardModel`), ``field_shape`` (H, W), ``grf`` (the Gaussian random
    field used as the prior-free initial ensemble of EKI) and ``sample_fields(n, generator)``."""

    name = "problem"
    forward: ForwardModel
    grf: GaussianRandomField

    @property
    def field_shape(self) -> tuple[int, int]:
        return self.grf.shape

    @property
    def ensemble_prior(self) -> GaussianRandomField:
        """The Gaussian random field EKI draws its initial ensemble from (default: ``grf``)."""
        return self.grf

    def sample_fields(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device=None,
        batch_size: int = 256,
        progress: bool = False,
    ) -> torch.Tensor:
        return self.grf.sample(n, generator, device)

    def config(self) -> dict:
        return dict(self._config)


class NavierStokesProblem(InverseProblem):
    name = "navier_stokes"

    def __init__(
        self,
        size: int = 64,
        reynolds: float = 200.0,
        horizon: float = 1.0,
        dt: float = 1e-2,
        downsample: int = 2,
        noise_std: float = 0.0,
        spinup: float = 5.0,
        alpha: float = 2.5,
        tau: float = 7.0,
        amplitude: float = 1.0,
        on_blowup: str = "raise",
        penalty: float = 1e3,
        ensemble_std: float = 4.5,
    ):
        self._config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.solver = NavierStokes2D(size, reynolds, horizon, dt)
        self.spinup = spinup
        self.grf = GaussianRandomField(size, alpha, tau, amplitude)
        # EKI's prior ensemble: the paper's smooth GRF (alpha=4, tau=3) at the pointwise std of the spun-up
        # fields (about 4.5 at Re=200), since EKI has no diffusion prior to tell it what the fields look like
        smooth = GaussianRandomField(size, 4.0, 3.0)
        self._ensemble_prior = GaussianRandomField(size, 4.0, 3.0, ensemble_std / smooth.std())
        self.forward = _Subsampled(
            "navier_stokes",
            self.solver,
            size,
            downsample,
            noise_std=noise_std,
            differentiable=True,
            on_blowup=on_blowup,
            penalty=penalty,
        )

    @property
    def ensemble_prior(self) -> GaussianRandomField:
        return self._ensemble_prior

    def sample_fields(self, n, generator=None, device=None, batch_size=256, progress=False):
        """Gaussian random fields evolved for ``spinup`` time units (batched; bounded memory)."""
        chunks = range(0, n, batch_size)
        if progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc="simulating fields", total=math.ceil(n / batch_size))
        out = []
        with torch.no_grad():
            for start in chunks:
                w = self.grf.sample(min(batch_size, n - start), generator, device)
                out.append(self.solver(w, self.spinup))
        return torch.cat(out)


class LinearProblem(InverseProblem):
    """y = S x + noise with S every ``stride``-th pixel and x ~ GRF: the posterior is Gaussian and exact."""

    name = "linear"

    def __init__(
        self,
        size: int = 16,
        stride: int = 4,
        noise_std: float = 0.1,
        alpha: float = 2.5,
        tau: float = 7.0,
        amplitude: float = 1.0,
        on_blowup: str = "raise",
        penalty: float = 1e3,
    ):
        self._config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.grf = GaussianRandomField(size, alpha, tau, amplitude)
        self.forward = _Subsampled(
            "sparse_observation",
            lambda x: x,
            size,
            stride,
            noise_std=noise_std,
            differentiable=True,
            on_blowup=on_blowup,
            penalty=penalty,
        )

    def matrix(self) -> torch.Tensor:
        """The observation operator as a dense (M, H W) matrix."""
        d = self.grf.size**2
        eye = torch.eye(d, dtype=torch.float64).reshape(d, 1, *self.field_shape)
        return self.forward.simulate(eye).reshape(d, -1).T

    def posterior(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact posterior mean (B, 1, H, W) and covariance (H W, H W) for measurements y (B, 1, m, m)."""
        from steerdiff.core.analytic import gaussian

        if self.forward.noise_std <= 0:
            raise ValueError("the exact posterior needs noise_std > 0 (with no noise it is degenerate)")
        y = self.forward.check_measurement(y)
        a = self.matrix()
        d = a.shape[1]
        prior = gaussian(torch.zeros(d, dtype=torch.float64), self.grf.covariance() + 1e-9 * torch.eye(d))
        means = [prior.posterior(a, yi.reshape(-1).double(), self.forward.noise_std) for yi in y]
        cov = means[0].covs[0]  # the same for every y
        mean = torch.stack([p.means[0] for p in means]).reshape(y.shape[0], 1, *self.field_shape)
        return mean.to(y.dtype), cov


class SaturatedProblem(InverseProblem):
    """y = tanh(blur(x) / level) at every ``stride``-th pixel, x ~ GRF: nonlinear, cheap, differentiable."""

    name = "saturated"

    def __init__(
        self,
        size: int = 32,
        stride: int = 2,
        noise_std: float = 0.05,
        blur: float = 1.5,
        level: float = 1.0,
        alpha: float = 2.5,
        tau: float = 7.0,
        amplitude: float = 1.0,
        on_blowup: str = "raise",
        penalty: float = 1e3,
    ):
        self._config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.grf = GaussianRandomField(size, alpha, tau, amplitude)
        from .fields import wavenumbers

        ky, kx = wavenumbers(size, size, dtype=torch.float64)
        kernel = torch.exp(-0.5 * blur**2 * (kx**2 + ky**2) * (2 * math.pi / size) ** 2)

        def transform(x):
            return torch.tanh(GaussianRandomField.apply(x, kernel.to(x.device, x.dtype)) / level)

        self.forward = _Subsampled(
            "saturated_blur",
            transform,
            size,
            stride,
            noise_std=noise_std,
            differentiable=True,
            on_blowup=on_blowup,
            penalty=penalty,
        )


class CustomProblem(InverseProblem):
    """Any forward model on (B, 1, H, W) fields as a problem; ``ensemble_prior`` is the Gaussian random field
    EKI starts from (default: ``GaussianRandomField(H)``)."""

    name = "custom"

    def __init__(self, forward: ForwardModel, ensemble_prior: GaussianRandomField | None = None):
        shape = tuple(forward.input_shape)
        if len(shape) != 3 or shape[0] != 1 or shape[1] != shape[2]:
            raise ValueError(
                f"{forward.name}: the unknown must be a square field of shape (1, H, H), got input "
                f"shape {shape}"
            )
        self.forward = forward
        self.grf = ensemble_prior or GaussianRandomField(shape[1])
        if self.grf.shape != shape[1:]:
            raise ValueError(
                f"the ensemble prior's grid {self.grf.shape} differs from the field's {shape[1:]}"
            )
        self._config = {
            "forward": forward.name,
            "input_shape": list(shape),
            "output_shape": list(forward.output_shape),
            "noise_std": forward.noise_std,
        }


PROBLEMS = {p.name: p for p in (NavierStokesProblem, LinearProblem, SaturatedProblem)}


def make_problem(name: str, **options) -> InverseProblem:
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; choose one of {sorted(PROBLEMS)}")
    return PROBLEMS[name](**options)
