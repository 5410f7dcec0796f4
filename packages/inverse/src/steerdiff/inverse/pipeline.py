"""``InversePipeline``: a field prior and the problem it was trained for, ready to solve measurements.

    from steerdiff.inverse import InversePipeline

    pipe = InversePipeline.from_pretrained("runs/ns/prior")           # a prior bundle
    solution = pipe.solve(y, method="enkg", particles=64, steps=16)     # y: (B, *observation shape)
    solution.estimate, solution.ensemble, solution.costs

``solve`` runs :func:`~steerdiff.inverse.methods.solve` with the problem's forward model, or with any
:class:`~steerdiff.inverse.forward.ForwardModel` passed as ``forward=`` (a black-box simulator included).
``save_pretrained`` writes the prior and the problem facts as one model bundle.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import torch

from steerdiff.core.runtime import resolve_device
from steerdiff.core.sampling import sample

from .fields import GaussianRandomField
from .forward import ForwardModel
from .methods import METHODS, MethodConfig, Solution, sigma_steps, solve
from .metrics import evaluate
from .prior import SIGMA_DATA, FieldPrior, PriorConfig, load_prior, train_prior
from .problems import CustomProblem, InverseProblem, make_problem

__all__ = ["InversePipeline"]

# what a solve costs, summed over the chunks of a sharded run (wall_time: seconds of every process together)
COSTS = ("network_evals", "gradient_evals", "forward_calls", "forward_evals", "blowups", "wall_time")


class InversePipeline:
    """A diffusion prior over fields (``prior``, None for prior-free EKI) and an inverse ``problem``."""

    def __init__(self, prior: FieldPrior | None = None, problem: InverseProblem | None = None, device="auto"):
        self.device = resolve_device(device)
        self.prior = prior.to(self.device) if prior is not None else None
        self.problem = problem
        if (
            prior is not None
            and problem is not None
            and prior.field_shape is not None
            and tuple(prior.field_shape[1:]) != tuple(problem.field_shape)
        ):
            raise ValueError(
                f"the prior was trained on {_grid(prior.field_shape[1:])} fields, but the "
                f"{problem.name} problem has {_grid(problem.field_shape)} fields; train a prior on "
                "this problem's fields (`steerdiff-inverse train-prior`)"
            )

    # ------------------------------------------------------------------------------------- bundles
    @classmethod
    def from_pretrained(
        cls, path, device="auto", problem: InverseProblem | None = None, **problem_options
    ) -> InversePipeline:
        """Load a prior bundle (or a training run folder holding ``model/``).

        The problem is ``problem`` if given, else the one recorded in the bundle, with ``problem_options``
        (e.g. ``noise_std=1.0``, ``on_blowup="penalty"``) replacing its recorded options.
        """
        device = resolve_device(device)
        prior = load_prior(path, device=device)
        if problem is None and prior.problem_spec:
            spec = prior.problem_spec
            problem = make_problem(spec["name"], **{**spec.get("options", {}), **problem_options})
        elif problem_options and problem is not None:
            raise ValueError(
                f"pass either problem=... or problem options {sorted(problem_options)}, not both; build the "
                "problem with those options instead"
            )
        elif problem_options:
            raise ValueError(
                f"problem options {sorted(problem_options)} need a problem: {path} records none, "
                "pass problem=..."
            )
        return cls(prior, problem, device)

    def save_pretrained(self, path) -> Path:
        """Write the prior, with this pipeline's problem as the one it is for, as a model bundle."""
        if self.prior is None:
            raise ValueError("this pipeline has no prior to save (EKI needs none); train or load one first")
        prior = self.prior
        if self.problem is not None and not isinstance(self.problem, CustomProblem):
            prior = copy.copy(prior)
            prior.info = {
                **prior.info,
                "problem": {"name": self.problem.name, "options": self.problem.config()},
            }
        return prior.save_pretrained(path)

    @classmethod
    def train(
        cls,
        fields: torch.Tensor,
        problem: InverseProblem | None = None,
        config: PriorConfig | None = None,
        out_dir=None,
        device="auto",
        progress: bool = False,
    ) -> InversePipeline:
        """Train a prior on (N, 1, H, W) ``fields`` (see :func:`~steerdiff.inverse.prior.train_prior`)."""
        device = resolve_device(device)
        prior = train_prior(fields, out_dir, config, device=device, progress=progress, problem=problem)
        return cls(prior, problem, device)

    # ------------------------------------------------------------------------------------- use
    @property
    def field_shape(self) -> tuple[int, ...]:
        """The (1, H, W) shape of one field."""
        if self.problem is not None:
            return (1, *self.problem.field_shape)
        if self.prior is not None and self.prior.field_shape:
            return tuple(self.prior.field_shape)
        raise ValueError("this pipeline knows no field shape: give it a problem or a prior that records one")

    def solve(
        self,
        measurement: torch.Tensor,
        forward: ForwardModel | None = None,
        method: str = "enkg",
        particles: int = 32,
        steps: int = 30,
        config: MethodConfig | None = None,
        seed: int = 0,
        generator: torch.Generator | None = None,
        progress: bool = False,
        shards=None,
        chunk_size: int = 4,
        **options,
    ) -> Solution | None:
        """Estimate the fields behind ``measurement`` (B, *observation shape).

        ``forward``: the forward model (default: the problem's); ``method``: one of ``METHODS``;
        ``particles``: ensemble members per measurement; ``steps``: diffusion steps; ``options``: further
        :class:`~steerdiff.inverse.methods.MethodConfig` fields (``scale``, ``iterations``, ...). Returns a
        :class:`~steerdiff.inverse.methods.Solution`: ``estimate`` (B, 1, H, W), ``ensemble``
        (B, J, 1, H, W) and ``costs``.

        ``shards`` (a folder): solve in resumable chunks of ``chunk_size`` measurements with
        :func:`steerdiff.core.sample_in_shards`, each chunk from its own seed and kept in ``shards/shards``;
        under ``torchrun`` the chunks are shared out over the processes, rank 0 returns the merged solution and
        the other ranks None. The result does not depend on the number of processes (it differs from an
        unsharded run, whose one batch draws from one generator); costs are summed over the chunks.
        """
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
        problem = self._problem(forward)
        if method != "eki" and self.prior is None:
            raise ValueError(
                f"method {method!r} needs a diffusion prior; load one with "
                "InversePipeline.from_pretrained(path), or use method='eki'"
            )
        fields = {f.name for f in dataclasses.fields(MethodConfig)}
        unknown = set(options) - fields
        if unknown:
            raise ValueError(f"unknown solver options {sorted(unknown)}; choose from {sorted(fields)}")
        cfg = dataclasses.replace(
            config or MethodConfig(), num_particles=particles, num_steps=steps, **options
        )
        if generator is None:
            generator = torch.Generator(self.device).manual_seed(seed)
        params = list(self.prior.parameters()) if self.prior is not None else []
        dtype = params[0].dtype if params else torch.float32
        y = torch.as_tensor(measurement).to(self.device)
        if shards is None:
            return solve(
                method, self.prior, problem, y, cfg, generator=generator, progress=progress, dtype=dtype
            )
        return self._solve_in_shards(method, problem, y, cfg, dtype, seed, shards, chunk_size, progress)

    def _solve_in_shards(self, method, problem, y, cfg, dtype, seed, shards, chunk_size, progress):
        from steerdiff.core.sharding import fingerprint, join_process_group, sample_in_shards

        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        join_process_group()
        device = self.device

        def job(start, stop, generator):
            g = torch.Generator(device).manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            sol = solve(method, self.prior, problem, y[start:stop], cfg, generator=g, dtype=dtype)
            share = torch.tensor([float(sol.costs.get(k, 0)) for k in COSTS], dtype=torch.float64) / (
                stop - start
            )
            return {
                "estimate": sol.estimate,
                "ensemble": sol.ensemble,
                "costs": share.expand(stop - start, -1),
            }

        key = {  # shards of another prior, problem, measurement or setting are never reused
            "prior": fingerprint(self.prior) if isinstance(self.prior, torch.nn.Module) else None,
            "problem": [problem.name, problem.forward.name, problem.forward.noise_std, problem.field_shape],
            "measurements": fingerprint(y),
            "method": method,
            "config": dataclasses.asdict(cfg),
        }
        merged = sample_in_shards(
            job,
            y.shape[0],
            shards,
            chunk_size=chunk_size,
            seed=int(seed),
            key=json.loads(json.dumps(key, default=str)),
            progress=progress,
        )
        if merged is None:
            return None  # another torchrun rank: rank 0 merges
        totals = merged["costs"].sum(0).tolist()
        costs = {k: (v if k == "wall_time" else round(v)) for k, v in zip(COSTS, totals, strict=True)}
        info = {"config": dataclasses.asdict(cfg), "chunk_size": chunk_size}
        return Solution(
            estimate=merged["estimate"].to(device),
            ensemble=merged["ensemble"].to(device),
            costs=costs,
            info=info,
        )

    def evaluate(
        self,
        solution: Solution,
        truth: torch.Tensor | None,
        measurement: torch.Tensor,
        forward: ForwardModel | None = None,
    ) -> dict:
        """Relative L2 to ``truth`` (when known; None skips it), measurement misfit, ensemble spread and the
        solution's costs."""
        device = solution.estimate.device
        return evaluate(
            solution,
            self._problem(forward),
            truth.to(device) if truth is not None else None,
            torch.as_tensor(measurement).to(device),
        )

    def sample(
        self, num_samples: int, steps: int = 30, seed: int = 0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``num_samples`` unguided fields (N, 1, H, W) from the prior (Heun, Karras grid)."""
        if self.prior is None:
            raise ValueError(
                "this pipeline has no prior to sample; load one with InversePipeline.from_pretrained"
            )
        if num_samples < 1 or steps < 1:
            raise ValueError(f"num_samples and steps must be positive, got {num_samples} and {steps}")
        if generator is None:
            generator = torch.Generator(self.device).manual_seed(seed)
        sig = sigma_steps(self.prior, MethodConfig(num_steps=steps))
        x = float(sig[0]) * torch.randn(
            (num_samples, *self.field_shape), generator=generator, device=self.device
        )
        with torch.no_grad():
            return sample(self.prior, x, sig, "heun", generator=generator).x

    def _problem(self, forward: ForwardModel | None) -> InverseProblem:
        if forward is None:
            if self.problem is None:
                raise ValueError("no forward model: pass forward=... or build the pipeline with a problem")
            return self.problem
        if not isinstance(forward, ForwardModel):
            raise TypeError(
                f"forward must be a ForwardModel (wrap a function with FunctionForwardModel), got "
                f"{type(forward).__name__}"
            )
        if self.problem is not None:
            if tuple(forward.input_shape) != (1, *self.problem.field_shape):
                raise ValueError(
                    f"{forward.name} takes inputs of shape {tuple(forward.input_shape)}, but the "
                    f"fields are {(1, *self.problem.field_shape)}"
                )
            problem = copy.copy(self.problem)
            problem.forward = forward
            return problem
        ensemble = None
        if self.prior is not None and len(forward.input_shape) == 3:
            # EKI's initial ensemble: a Gaussian random field with the pointwise std of the prior's fields
            grf = GaussianRandomField(forward.input_shape[-1])
            ensemble = GaussianRandomField(grf.size, amplitude=self.prior.scale * SIGMA_DATA / grf.std())
        return CustomProblem(forward, ensemble)

    def __repr__(self) -> str:
        problem = self.problem.name if self.problem is not None else None
        return (
            f"InversePipeline(prior={'yes' if self.prior is not None else 'none'}, problem={problem}, "
            f"device={self.device})"
        )


def _grid(shape) -> str:
    return "x".join(str(int(s)) for s in shape)
