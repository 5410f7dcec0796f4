"""The forward-model interface: a batched simulator, its observation operator and its noise model.

``ForwardModel.__call__(x)`` maps a batch of unknowns (B, *input_shape) to noise-free measurements
(B, *output_shape). It

* checks the input shape and names the fix;
* runs without autograd unless the model declares ``differentiable=True`` (a black-box simulator is never
  asked for a gradient; asking one for a gradient is a clear error, not a silent zero);
* guards against blow-ups: a row whose output has NaN or inf either raises :class:`ForwardModelBlowup`
  (``on_blowup="raise"``) or is replaced by the constant ``penalty`` (``on_blowup="penalty"``, with a zero
  gradient for a differentiable model: autograd would otherwise carry 0 * NaN = NaN back to the input), and is
  counted in ``blowups`` — a NaN never reaches a posterior silently;
* counts ``calls`` (batched calls, i.e. sequential rounds) and ``evals`` (rows).

``measure(x, generator)`` adds the Gaussian measurement noise of standard deviation ``noise_std``.
Subclasses implement ``simulate(x)``; :class:`FunctionForwardModel` wraps any batched callable.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["BLOWUP_POLICIES", "ForwardModel", "ForwardModelBlowup", "FunctionForwardModel"]

BLOWUP_POLICIES = ("raise", "penalty")


class ForwardModelBlowup(FloatingPointError, ValueError):
    """The forward model returned NaN or inf (typically an off-manifold input made the simulator unstable).
    A ``ValueError`` too, so command lines report it as a user error in one line."""


class ForwardModel:
    name = "forward"

    def __init__(
        self,
        input_shape: tuple[int, ...],
        output_shape: tuple[int, ...],
        noise_std: float = 0.0,
        differentiable: bool = False,
        on_blowup: str = "raise",
        penalty: float = 1e3,
    ):
        if on_blowup not in BLOWUP_POLICIES:
            raise ValueError(f"on_blowup must be one of {list(BLOWUP_POLICIES)}, got {on_blowup!r}")
        if not noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.input_shape, self.output_shape = tuple(input_shape), tuple(output_shape)
        self.noise_std = float(noise_std)
        self.differentiable = bool(differentiable)
        self.on_blowup, self.penalty = on_blowup, float(penalty)
        self.reset_counts()

    def simulate(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reset_counts(self) -> None:
        self.calls = self.evals = self.blowups = 0

    def counts(self) -> dict[str, int]:
        return {"forward_calls": self.calls, "forward_evals": self.evals, "blowups": self.blowups}

    def check_input(self, x: torch.Tensor) -> None:
        if (
            not isinstance(x, torch.Tensor)
            or x.ndim != len(self.input_shape) + 1
            or tuple(x.shape[1:]) != self.input_shape
        ):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"{self.name}: the input must be a batch of shape "
                f"(B, {', '.join(map(str, self.input_shape))}), got {got}; a single field needs a batch "
                "dimension, x[None]"
            )

    def check_measurement(self, y: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        """y must be (B, *output_shape) (or output_shape for one measurement); returns the batched form."""
        y = torch.as_tensor(y)
        if tuple(y.shape) == self.output_shape:
            y = y[None]
        if tuple(y.shape[1:]) != self.output_shape or (batch is not None and y.shape[0] != batch):
            want = f"({batch if batch is not None else 'B'}, {', '.join(map(str, self.output_shape))})"
            raise ValueError(
                f"{self.name}: the measurement must have shape {want} (one row per problem instance), "
                f"got {tuple(y.shape)}"
            )
        if not torch.isfinite(y).all():
            raise ValueError(
                f"{self.name}: the measurement contains NaN or inf; drop or impute those entries"
            )
        return y

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if self.differentiable:
            out = self.simulate(x)
        else:
            if torch.is_grad_enabled() and x.requires_grad:
                raise TypeError(
                    f"{self.name} is a black box (differentiable=False) and gives no gradients; use a "
                    "derivative-free method (EnKG, EKI, SCG, SMC) or a differentiable forward model"
                )
            with torch.no_grad():
                out = self.simulate(x.detach())
        out = torch.as_tensor(out).to(device=x.device, dtype=x.dtype)  # measurements in the unknown's dtype
        if tuple(out.shape) != (x.shape[0], *self.output_shape):
            raise ValueError(
                f"{self.name}.simulate returned shape {tuple(out.shape)}, expected "
                f"{(x.shape[0], *self.output_shape)}"
            )
        self.calls += 1
        self.evals += x.shape[0]
        bad = ~torch.isfinite(out.detach()).reshape(x.shape[0], -1).all(1)
        if bad.any():
            self.blowups += int(bad.sum())
            if self.on_blowup == "raise":
                rows = bad.nonzero()[:5, 0].tolist()
                raise ForwardModelBlowup(
                    f"{self.name} returned NaN or inf for {int(bad.sum())} of {x.shape[0]} inputs "
                    f"(rows {rows}{'...' if bad.sum() > 5 else ''}; "
                    f"input max |x| = {float(x.detach().abs().max()):.3g}). "
                    "Off-manifold inputs make the simulator unstable: pass on_blowup='penalty' to score them "
                    "with a constant penalty, use clean (ODE) estimates, or lower the guidance scale / "
                    "time step"
                )
            fill = torch.full_like(out, self.penalty)
            out = torch.where(bad.reshape(-1, *([1] * (out.ndim - 1))), fill, out)
            if (
                x.requires_grad
            ):  # torch.where passes 0 * NaN = NaN back through the simulator: zero those rows
                mask = bad.reshape(-1, *([1] * (x.ndim - 1)))
                x.register_hook(lambda grad: torch.where(mask, torch.zeros_like(grad), grad))
        return out

    def measure(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noisy measurements y = G(x) + noise_std * n (not counted as solver cost)."""
        calls, evals = self.calls, self.evals
        y = self(x)
        self.calls, self.evals = calls, evals
        if self.noise_std > 0:
            y = y + self.noise_std * torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
        return y

    def misfit(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-row relative measurement misfit ||y_hat - y|| / ||y||."""
        y = y.expand_as(y_hat) if y.shape[0] == 1 else y
        num = (y_hat - y).flatten(1).norm(dim=1)
        return num / y.flatten(1).norm(dim=1).clamp_min(1e-12)


class FunctionForwardModel(ForwardModel):
    """Any batched callable ``fn(x) -> y`` as a forward model."""

    def __init__(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        input_shape,
        output_shape,
        name: str = "forward",
        **kwargs,
    ):
        super().__init__(input_shape, output_shape, **kwargs)
        self.fn, self.name = fn, name

    def simulate(self, x):
        return torch.as_tensor(self.fn(x))
