"""Checkpoints: one directory per checkpoint, JSON for structure and safetensors for tensors.

    <checkpoint>/
        config.json             how to rebuild: network name + config, parametrization, sigma_data,
                                schedule, training config, step, format version
        model.safetensors       the network's weights (``net.state_dict()`` keys)
        ema.safetensors         the EMA copy of the same weights (optional)
        optimizer.safetensors   optimizer state tensors; their nesting is a JSON index in the metadata
        trainer_state.json      step, losses, data-sampler and RNG states (everything to resume exactly)

Nothing is pickled. A save writes a hidden sibling directory, fsyncs it and renames it into place; the
previous checkpoint stays until the new one is complete, so an interrupted save loses nothing already saved.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .denoiser import Denoiser
from .io import atomic_directory, fsync_file, recover_directory, write_json
from .schedules import Schedule, get_schedule

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "checkpoint_exists",
    "load_checkpoint",
    "load_denoiser",
    "load_schedule",
    "load_weights",
    "network_spec",
    "save_checkpoint",
]

FORMAT_VERSION = 1
CONFIG, MODEL, EMA, OPTIMIZER, TRAINER_STATE = (
    "config.json",
    "model.safetensors",
    "ema.safetensors",
    "optimizer.safetensors",
    "trainer_state.json",
)


class CheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete, corrupt or does not fit the network."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint directory, tensors on the requested device."""

    path: Path
    config: dict
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None = None
    optimizer: dict | None = None
    trainer_state: dict | None = None

    @property
    def step(self) -> int:
        return int(self.config.get("step", 0))


def _unwrap(net: nn.Module) -> nn.Module:
    return net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net


def network_spec(net: nn.Module) -> dict | None:
    """``{"name", "config"}`` of a registered network (see ``nets.build_network``), else None."""
    net = _unwrap(net)
    name, config = getattr(net, "name", None), getattr(net, "config", None)
    if not isinstance(name, str) or not dataclasses.is_dataclass(config):
        return None
    return {"name": name, "config": dataclasses.asdict(config)}  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- writing


def _write_json(path: Path, obj: Any) -> None:
    write_json(path, obj, indent=1)


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    # clone: safetensors refuses tensors that share memory (tied weights) and wants contiguous CPU data
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata={"format": "pt", **(metadata or {})})
    fsync_file(path)


def _encode(obj: Any, tensors: dict[str, torch.Tensor], key: str) -> Any:
    """Nested state (dicts with int keys, tuples, tensors) -> JSON, tensors moved into ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _encode(v, tensors, f"{key}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, tensors, f"{key}.{i}") for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {key!r} in a checkpoint")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        return {k: _decode(v, tensors) for k, v in obj["__dict__"]}
    return obj


def save_checkpoint(
    path,
    denoiser: Denoiser,
    *,
    schedule: Schedule | dict | None = None,
    ema: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | dict | None = None,
    train_config: Any = None,
    trainer_state: dict | None = None,
    step: int = 0,
) -> Path:
    """Write a checkpoint directory atomically and return its path.

    ``ema`` is the EMA copy of ``denoiser.net`` (a network or a Denoiser around it); ``optimizer`` an
    optimizer or its ``state_dict()``; ``train_config`` a dataclass or dict; ``trainer_state`` any
    JSON-ready dict (the trainer keeps step, losses and RNG states there).
    """
    net = _unwrap(denoiser.net)
    if isinstance(schedule, Schedule):
        schedule = schedule.to_dict()
    if dataclasses.is_dataclass(train_config) and not isinstance(train_config, type):
        train_config = dataclasses.asdict(train_config)
    config = {
        "format": "steerdiff-checkpoint",
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "network": network_spec(net),
        "denoiser": {"parametrization": denoiser.parametrization, "sigma_data": denoiser.sigma_data},
        "schedule": schedule,
        "training": train_config,
        "torch_version": torch.__version__,
    }
    with atomic_directory(path) as tmp:
        _write_tensors(tmp / MODEL, net.state_dict(), {"step": str(step)})
        if ema is not None:
            ema_net = _unwrap(ema.net if isinstance(ema, Denoiser) else ema)
            _write_tensors(tmp / EMA, ema_net.state_dict(), {"step": str(step)})
        if optimizer is not None:
            state = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
            tensors: dict[str, torch.Tensor] = {}
            index = _encode(state, tensors, "optimizer")
            _write_tensors(tmp / OPTIMIZER, tensors, {"index": json.dumps(index)})
        if trainer_state is not None:
            _write_json(tmp / TRAINER_STATE, trainer_state)
        _write_json(tmp / CONFIG, config)  # last: a directory with config.json is complete
    return path


# ---------------------------------------------------------------------------------------------- reading


def checkpoint_exists(path) -> bool:
    """Whether ``path`` holds a checkpoint (after recovering one whose save was cut between renames)."""
    path = Path(path)
    recover_directory(path)
    return path.is_dir()


def _resolve(path) -> Path:
    path = Path(path)
    recover_directory(path)
    recover_directory(path / "checkpoint")  # path may be a training run's out_dir
    if not path.exists():
        raise CheckpointError(
            f"checkpoint directory {path} does not exist; pass the directory written by "
            f"save_checkpoint or train(out_dir=...) (it holds {CONFIG} and {MODEL})"
        )
    if path.is_file():
        raise CheckpointError(
            f"{path} is a file, but a checkpoint is a directory; pass {path.parent} instead"
        )
    if not (path / CONFIG).exists() and (path / "checkpoint" / CONFIG).exists():
        return path / "checkpoint"  # a training run's out_dir
    return path


def _read_json(path: Path, error: type[CheckpointError] = CheckpointError) -> dict:
    if not path.exists():
        raise error(
            f"{path} is missing: {path.parent} is incomplete; point to a complete folder or train again"
        )
    try:
        with open(path) as f:
            obj = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(
            f"{path} is not valid JSON ({e}); the folder is corrupt, restore it from a copy or train again"
        ) from None
    if not isinstance(obj, dict):
        raise error(f"{path} should hold a JSON object, got {type(obj).__name__}; it is corrupt")
    return obj


def _read_tensors(
    path: Path, device="cpu", error: type[CheckpointError] = CheckpointError
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.exists():
        raise error(
            f"{path} is missing: {path.parent} is incomplete; point to a complete folder or train again"
        )
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path), device=str(device)), metadata
    except (SafetensorError, OSError, ValueError) as e:
        raise error(f"{path} is corrupt or truncated ({e}); restore it from a copy or train again") from None


def load_checkpoint(path, device="cpu", *, ema: bool = True, optimizer: bool = True) -> Checkpoint:
    """Read a checkpoint directory (or a training run's ``out_dir``), checking every file it needs."""
    path = _resolve(path)
    config = _read_json(path / CONFIG)
    version = config.get("format_version")
    if not isinstance(version, int) or "denoiser" not in config:
        raise CheckpointError(
            f"{path / CONFIG} is not a steerdiff checkpoint config (no format_version or denoiser entry)"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path / CONFIG} has format version {version}, newer than this steerdiff "
            f"reads ({FORMAT_VERSION}); upgrade steerdiff-core"
        )
    ckpt = Checkpoint(path=path, config=config, model=_read_tensors(path / MODEL, device)[0])
    if ema and (path / EMA).exists():
        ckpt.ema = _read_tensors(path / EMA, device)[0]
    if optimizer and (path / OPTIMIZER).exists():
        tensors, meta = _read_tensors(path / OPTIMIZER, device)
        try:
            ckpt.optimizer = _decode(json.loads(meta["index"]), tensors)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"{path / OPTIMIZER} has a missing or corrupt structure index ({e!r}); "
                "it cannot be resumed, start a new run"
            ) from None
    if (path / TRAINER_STATE).exists():
        ckpt.trainer_state = _read_json(path / TRAINER_STATE)
    return ckpt


def load_weights(module: nn.Module, state: dict[str, torch.Tensor], source) -> None:
    """``module.load_state_dict(state)`` after checking names and shapes, naming ``source`` on mismatch."""
    own = module.state_dict()
    missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit the network: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}; build the same network that wrote the checkpoint"
        )
    for k, v in own.items():
        if v.shape != state[k].shape:
            raise CheckpointError(
                f"{source}: {k!r} has shape {tuple(state[k].shape)} but the network "
                f"expects {tuple(v.shape)}; build the same network (config.json) that "
                "wrote it"
            )
    module.load_state_dict(state)


def load_denoiser(path, ema: bool = True, device="cpu", net: nn.Module | None = None) -> Denoiser:
    """Rebuild the Denoiser of a checkpoint for sampling (EMA weights by default), in eval mode.

    ``path`` is the checkpoint directory or a training run's ``out_dir``; ``device="auto"`` picks CUDA.

    The network is rebuilt from config.json with ``nets.build_network``; for a network outside that
    registry pass an instance of it as ``net`` and the weights are loaded into it.
    """
    ckpt = load_checkpoint(path, device="cpu", ema=ema, optimizer=False)
    cfg_path = ckpt.path / CONFIG
    if net is None:
        spec = ckpt.config.get("network")
        if not spec:
            raise CheckpointError(
                f"{cfg_path} names no registered network (it was trained with a custom "
                "module); pass an instance of that network as net=..."
            )
        from .nets import build_network

        try:
            net = build_network(spec["name"], **spec["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{cfg_path}: cannot rebuild the network ({e})") from None
    if ema:
        if ckpt.ema is None:
            raise CheckpointError(f"{ckpt.path / EMA} is missing; load the raw weights with ema=False")
        load_weights(net, ckpt.ema, ckpt.path / EMA)
    else:
        load_weights(net, ckpt.model, ckpt.path / MODEL)
    d = ckpt.config["denoiser"]
    try:
        denoiser = Denoiser(net, d["parametrization"], d["sigma_data"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg_path}: bad denoiser entry {d!r} ({e})") from None
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return denoiser.to(device).eval().requires_grad_(False)


def load_schedule(path) -> Schedule:
    """The noise schedule a checkpoint was trained with."""
    ckpt_path = _resolve(path)
    schedule = _read_json(ckpt_path / CONFIG).get("schedule")
    if not schedule:
        raise CheckpointError(f"{ckpt_path / CONFIG} records no schedule; pass the schedule yourself")
    try:
        return get_schedule(schedule)
    except (TypeError, ValueError) as e:
        raise CheckpointError(
            f"{ckpt_path / CONFIG}: cannot rebuild the schedule {schedule!r} ({e})"
        ) from None
