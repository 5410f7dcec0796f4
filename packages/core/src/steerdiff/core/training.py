"""Denoising score-matching training: AdamW, linear warm-up, gradient clipping, EMA, exact resume, DDP.

``train(denoiser, schedule, data, config, out_dir)`` draws every random number from explicit generators
seeded by ``config.seed``:

* a CPU generator shuffles the data (epochs without replacement, the last incomplete batch dropped);
* a generator on the training device draws the noise levels, the noise and the classifier-free-guidance
  dropout of the condition;
* the global torch RNG (dropout inside the network) is seeded inside ``torch.random.fork_rng``, so the
  caller's global RNG is left untouched.

All three states go into every checkpoint, so a run killed and resumed ends bit-identical to one that
never stopped. Under ``torchrun`` (WORLD_SIZE > 1) every rank draws the same global batch of
``batch_size`` indices, noise levels and noise from the shared generators and trains on its own slice of
it; DistributedDataParallel averages the gradients, so all ranks stay in lockstep with identical weights,
and only rank 0 writes checkpoints.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import (
    CONFIG,
    CheckpointError,
    checkpoint_exists,
    load_checkpoint,
    load_weights,
    network_spec,
    save_checkpoint,
)
from .denoiser import Denoiser
from .runtime import PRECISIONS, autocast, resolve_device
from .schedules import Schedule, get_schedule

__all__ = ["TrainConfig", "TrainResult", "train"]

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Hyper-parameters of a run; saved as JSON in every checkpoint."""

    steps: int = 10_000
    batch_size: int = 256  # the global batch; under DDP each of W ranks takes batch_size / W
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear warm-up of the learning rate from lr / warmup_steps to lr
    lr_schedule: str = (
        "constant"  # after warm-up: "constant", or "cosine" (half a cosine from lr to 0 at `steps`)
    )
    grad_clip: float | None = 1.0  # max global gradient norm; None turns clipping off
    ema_decay: float = 0.999
    ema_warmup: bool = True  # decay at update t: min(ema_decay, (1 + t) / (10 + t))
    seed: int = 0
    checkpoint_every: int = 1000  # 0: only at the end (checkpoints need out_dir)
    log_every: int = 100
    cfg_dropout: float = 0.0  # probability of dropping the condition (classifier-free guidance)
    precision: str = "fp32"  # "bf16": the network's forward and backward under bfloat16 autocast (GPU speed)
    compile: bool | str = False  # torch.compile the loss: True (inductor) or a backend name ("aot_eager")

    def __post_init__(self):
        checks = [
            (self.steps >= 1, "steps must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (self.lr_schedule in ("constant", "cosine"), "lr_schedule must be 'constant' or 'cosine'"),
            (self.grad_clip is None or self.grad_clip > 0, "grad_clip must be > 0 or None"),
            (0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (0 <= self.cfg_dropout < 1, "cfg_dropout must be in [0, 1)"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {msg}, got {self}")


# fields that change the maths of a run: a resume that changes them is no longer the same run
_RUN_FIELDS = (
    "batch_size",
    "lr",
    "weight_decay",
    "warmup_steps",
    "lr_schedule",
    "grad_clip",
    "ema_decay",
    "ema_warmup",
    "seed",
    "cfg_dropout",
    "precision",
)


_CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


@dataclass
class TrainResult:
    losses: list[float]  # the mean loss of every step from step 1, including resumed history
    step: int  # the final step
    ema: Denoiser  # the EMA weights wrapped as a Denoiser, ready for sampling
    resumed_from: int = 0  # the step the run resumed from (0: fresh start)
    paths: dict[str, Path] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- helpers


def _seed(seed: int, stream: int) -> int:
    return (seed * 1_000_003 + stream) % 2**63


def _b64(state: torch.Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode()


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


class _EpochSampler:
    """Shuffled epochs without replacement; resumable from (RNG state at the epoch's start, position)."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._new_epoch()

    def _new_epoch(self):
        self.epoch_start = self.generator.get_state()
        self.perm, self.pos = torch.randperm(self.n, generator=self.generator), 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.n:
            self._new_epoch()
        self.pos += self.batch_size
        return self.perm[self.pos - self.batch_size : self.pos]

    def state_dict(self) -> dict:
        return {"n": self.n, "pos": self.pos, "epoch_start_rng": _b64(self.epoch_start)}

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != self.n:
            warnings.warn(
                f"the checkpoint's data had {state['n']} samples, this data has {self.n}; "
                "the data order starts a new epoch, so the resumed run is not the same run",
                stacklevel=2,
            )
            return
        self.generator.set_state(_unb64(state["epoch_start_rng"]))
        self._new_epoch()
        self.pos = state["pos"]


class _DSMLoss(nn.Module):
    """The per-sample loss as a module's forward, so DistributedDataParallel sees the network call."""

    def __init__(self, denoiser: Denoiser):
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x0, sigma, noise, **cond):
        return self.denoiser.loss(x0, sigma, noise, **cond)


def _check_finite(t: torch.Tensor, name: str) -> None:
    bad = ~torch.isfinite(t)
    if bad.any():
        rows = bad.flatten(1).any(1)
        first = int(rows.nonzero()[0, 0])
        entry = (first, *bad[first].nonzero()[0].tolist())
        raise ValueError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or inf) in "
            f"{int(rows.sum())} sample(s); the first bad sample is index {first} "
            f"(entry {entry}); remove or impute them before training"
        )


def _check_inputs(data, cond, config: TrainConfig, dtype: torch.dtype, world: int) -> None:
    if not isinstance(data, torch.Tensor):
        raise TypeError(
            f"data must be a torch.Tensor of shape (N, ...), got {type(data).__name__}; "
            "convert it with torch.as_tensor(data, dtype=torch.float32)"
        )
    if data.ndim < 2:
        raise ValueError(
            f"data must have shape (N, ...) with the samples along dim 0, got shape "
            f"{tuple(data.shape)}; for N scalars pass data[:, None]"
        )
    n = data.shape[0]
    if n == 0:
        raise ValueError("data is empty (0 samples); training needs at least batch_size samples")
    if not data.is_floating_point():
        raise ValueError(
            f"data must be a floating-point tensor, got {data.dtype}; convert it with data.to({dtype})"
        )
    if data.dtype != dtype:
        raise ValueError(
            f"data is {data.dtype} but the network's parameters are {dtype}; convert one of "
            f"them, e.g. data.to({dtype})"
        )
    _check_finite(data, "data")
    if config.batch_size > n:
        raise ValueError(
            f"batch_size {config.batch_size} is larger than the dataset ({n} samples); "
            "lower TrainConfig.batch_size or add data"
        )
    if config.batch_size % world:
        raise ValueError(
            f"batch_size {config.batch_size} must be divisible by the number of processes "
            f"({world}): it is the global batch, split evenly over the ranks"
        )
    if cond is not None:
        if not isinstance(cond, torch.Tensor) or cond.ndim < 2 or cond.shape[0] != n:
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(
                f"cond must be a tensor of shape (N, cond_dim) = ({n}, cond_dim), one row per "
                f"sample of data; got {got}"
            )
        if cond.is_floating_point():
            _check_finite(cond, "cond")


def _lr(config: TrainConfig, step: int) -> float:
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.lr_schedule == "cosine":
        span = max(config.steps - config.warmup_steps, 1)
        return config.lr * 0.5 * (1 + math.cos(math.pi * min(step - config.warmup_steps, span) / span))
    return config.lr


def _ema_decay(config: TrainConfig, step: int) -> float:
    return min(config.ema_decay, (1 + step) / (10 + step)) if config.ema_warmup else config.ema_decay


@torch.no_grad()
def _ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), net.parameters()):
        e.lerp_(p, 1 - decay)
    for eb, b in zip(ema.buffers(), net.buffers()):
        eb.copy_(b)


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def _global_rng_state() -> dict:
    return {
        "cpu": _b64(torch.get_rng_state()),
        "cuda": [_b64(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }


def _gather_object(obj, world: int) -> list:
    if world == 1:
        return [obj]
    out = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def _mean_losses(pending: list[torch.Tensor], world: int) -> list[float]:
    vals = torch.stack(pending).float()
    if world > 1:
        torch.distributed.all_reduce(vals)
        vals /= world
    return vals.tolist()


# ------------------------------------------------------------------------------------------------- train


def train(
    denoiser: Denoiser,
    schedule: Schedule | str | dict,
    data: torch.Tensor,
    config: TrainConfig | None = None,
    out_dir=None,
    resume: bool = True,
    progress: bool = True,
    cond: torch.Tensor | None = None,
    device=None,
) -> TrainResult:
    """Train ``denoiser`` (in place) by denoising score matching on ``data`` (N, ...).

    ``cond`` (N, cond_dim) conditions the network; with ``config.cfg_dropout`` > 0 each sample's condition
    is dropped (``cond_mask`` False) with that probability. With ``out_dir`` a checkpoint is kept in
    ``out_dir/checkpoint`` every ``config.checkpoint_every`` steps and at the end; with ``resume`` a run
    finds it there and continues. ``device``: None keeps the denoiser where it is, "auto" picks CUDA.
    """
    config = config or TrainConfig()
    schedule = get_schedule(schedule)
    device = resolve_device(device, denoiser)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    created = False
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            created = True
        world = dist.get_world_size()
    try:
        with torch.random.fork_rng(devices=_cuda_devices()):
            return _train(denoiser, schedule, data, config, out_dir, resume, progress, cond, device, world)
    finally:
        if created:
            torch.distributed.destroy_process_group()


def _train(denoiser, schedule, data, config, out_dir, resume, progress, cond, device, world) -> TrainResult:
    rank = torch.distributed.get_rank() if world > 1 else 0
    torch.manual_seed(_seed(config.seed, 2 + rank))  # inside fork_rng: network-internal randomness only
    denoiser.to(device).train()
    net = denoiser.net
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the denoiser's network has no trainable parameters")
    _check_inputs(data, cond, config, params[0].dtype, world)
    n, batch, local = data.shape[0], config.batch_size, config.batch_size // world
    mine = slice(rank * local, (rank + 1) * local)

    sampler = _EpochSampler(n, batch, _seed(config.seed, 0))
    gen = torch.Generator(device).manual_seed(_seed(config.seed, 1))
    ckpt_path = Path(out_dir) / "checkpoint" if out_dir is not None else None
    ckpt = None
    if resume and ckpt_path is not None and checkpoint_exists(ckpt_path):
        ckpt = load_checkpoint(ckpt_path, device="cpu")
        _check_and_load_weights(ckpt, denoiser, schedule, config)

    ema = copy.deepcopy(net).requires_grad_(False).eval()
    model: Any = _DSMLoss(denoiser)
    if world > 1:  # broadcasts rank 0's weights
        ids = [device] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    ema.load_state_dict(net.state_dict())  # after the broadcast
    if config.compile:
        model = torch.compile(model, backend="inductor" if config.compile is True else str(config.compile))
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    start, losses = _restore(ckpt, ema, optimizer, sampler, gen, device, rank) if ckpt else (0, [])
    if start >= config.steps:
        log.info("%s is at step %d >= steps=%d: nothing to train", ckpt_path, start, config.steps)

    def save(step):
        trainer_state = {
            "step": step,
            "losses": losses,
            "sampler": sampler.state_dict(),
            "noise_rng": {"device": str(device), "state": _b64(gen.get_state())},
            "torch_rng": _gather_object(_global_rng_state(), world),
            "world_size": world,
        }
        if rank == 0:
            save_checkpoint(
                ckpt_path,
                denoiser,
                schedule=schedule,
                ema=ema,
                optimizer=optimizer,
                train_config=config,
                trainer_state=trainer_state,
                step=step,
            )
        if world > 1:
            torch.distributed.barrier()

    bar = tqdm(total=config.steps, initial=start, desc="training", disable=not progress or rank != 0)
    pending: list[torch.Tensor] = []
    every = config.checkpoint_every
    for step in range(start, config.steps):
        idx = sampler.next()  # the global batch, identical on every rank
        sigma = schedule.sample_training_sigma(batch, generator=gen, device=device).to(data.dtype)
        noise = torch.randn((batch, *data.shape[1:]), generator=gen, device=device, dtype=data.dtype)
        kwargs = {}
        if cond is not None:  # always a mask, so the null condition takes part in every step (DDP)
            keep = torch.ones(batch, dtype=torch.bool, device=device)
            if config.cfg_dropout:
                keep = torch.rand(batch, generator=gen, device=device) >= config.cfg_dropout
            kwargs = {"cond": cond[idx[mine]].to(device), "cond_mask": keep[mine]}
        for group in optimizer.param_groups:
            group["lr"] = _lr(config, step)
        with autocast(device, config.precision):
            loss = model(data[idx[mine]].to(device), sigma[mine], noise[mine], **kwargs)
        loss = loss.mean(dtype=torch.float32) if config.precision == "bf16" else loss.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        _ema_update(ema, net, _ema_decay(config, step))
        pending.append(loss.detach())
        done = step + 1
        saving = ckpt_path is not None and ((every and done % every == 0) or done == config.steps)
        if saving or done % config.log_every == 0 or done == config.steps:
            new = _mean_losses(pending, world)
            pending = []
            if not all(math.isfinite(v) for v in new):
                bad = done - len(new) + next(i for i, v in enumerate(new) if not math.isfinite(v))
                raise FloatingPointError(
                    f"the training loss became non-finite at step {bad + 1}; lower "
                    "TrainConfig.lr, keep grad_clip on, or check the scale of data/cond"
                )
            losses += new
            window = losses[-min(len(losses), config.log_every) :]
            bar.set_postfix(loss=f"{sum(window) / len(window):.4g}", lr=f"{_lr(config, step):.3g}")
            if done % config.log_every == 0:
                log.info("step %d  loss %.5g  lr %.3g", done, sum(window) / len(window), _lr(config, step))
        if saving:
            save(done)
        bar.update(1)
    bar.close()
    final = max(start, config.steps)
    paths: dict[str, Path] = {}
    if out_dir is not None and ckpt_path is not None:
        paths = {"out_dir": Path(out_dir), "checkpoint": ckpt_path}
    denoiser.eval()
    ema_denoiser = Denoiser(ema, denoiser.parametrization, denoiser.sigma_data)
    return TrainResult(losses=losses, step=final, ema=ema_denoiser, resumed_from=start, paths=paths)


def _restore(ckpt, ema, optimizer, sampler, gen, device, rank) -> tuple[int, list[float]]:
    """Load EMA, optimizer, data-order and RNG states; return the step and the loss history."""
    load_weights(ema, ckpt.ema, ckpt.path / "ema.safetensors")
    try:
        optimizer.load_state_dict(ckpt.optimizer)
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(
            f"{ckpt.path / 'optimizer.safetensors'} does not fit the network's parameters "
            f"({e}); resume with the same network or pass resume=False"
        ) from None
    state = ckpt.trainer_state
    try:
        sampler.load_state_dict(state["sampler"])
        if torch.device(state["noise_rng"]["device"]).type == device.type:
            gen.set_state(_unb64(state["noise_rng"]["state"]))
        else:
            warnings.warn(
                f"the checkpoint was trained on {state['noise_rng']['device']}, this run uses "
                f"{device}; the noise stream restarts, so the run is not bit-identical to an "
                "unbroken one",
                stacklevel=2,
            )
        if rank < len(state["torch_rng"]):
            rng = state["torch_rng"][rank]
            torch.set_rng_state(_unb64(rng["cpu"]))
            if rng["cuda"] and len(rng["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all([_unb64(s) for s in rng["cuda"]])
        step = int(state["step"])
        return step, [float(v) for v in state["losses"][:step]]
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{ckpt.path / 'trainer_state.json'} is incomplete or corrupt ({e!r}); "
            "resume from another checkpoint or pass resume=False"
        ) from None


def _as_json(obj):
    return json.loads(json.dumps(obj))  # tuples -> lists, as config.json stores them


def _check_and_load_weights(ckpt, denoiser: Denoiser, schedule: Schedule, config: TrainConfig) -> None:
    cfg, where = ckpt.config, ckpt.path / CONFIG
    if ckpt.optimizer is None or ckpt.trainer_state is None or ckpt.ema is None:
        raise CheckpointError(
            f"{ckpt.path} has no optimizer, EMA or trainer state (optimizer.safetensors, "
            "ema.safetensors, trainer_state.json); it can be sampled from but not resumed: "
            "pass resume=False or another out_dir"
        )
    saved = cfg["denoiser"]
    if (saved["parametrization"], saved["sigma_data"]) != (denoiser.parametrization, denoiser.sigma_data):
        raise CheckpointError(
            f"{where} was trained with parametrization={saved['parametrization']!r}, "
            f"sigma_data={saved['sigma_data']}, but this denoiser has "
            f"{denoiser.parametrization!r}, {denoiser.sigma_data}; pass resume=False or "
            "another out_dir"
        )
    load_weights(denoiser.net, ckpt.model, ckpt.path / "model.safetensors")
    now = dataclasses.asdict(config)
    saved = {**_CONFIG_DEFAULTS, **(cfg.get("training") or {})}  # fields added later keep their defaults
    changed = [f for f in _RUN_FIELDS if saved.get(f) != now[f]]
    if cfg.get("schedule") != _as_json(schedule.to_dict()):
        changed.append("schedule")
    if cfg.get("network") != _as_json(network_spec(denoiser.net)):
        changed.append("network config")
    if changed:
        warnings.warn(
            f"resuming from {ckpt.path} with a different {', '.join(changed)} than the run that "
            "wrote it; the resumed run continues with the new settings",
            stacklevel=2,
        )
