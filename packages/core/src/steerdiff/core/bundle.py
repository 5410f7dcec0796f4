"""Model bundles: a trained denoiser plus what its domain needs to use it, in one folder.

    <bundle>/
        config.json           format and version, the network and how to rebuild it, the parametrization,
                              the noise schedule, and a ``domain`` section (the data split, scaling, horizon,
                              rule set, environment, grid: whatever the domain needs to use the model)
        model.safetensors     the denoiser network's weights (the EMA weights of a training run)
        <name>.safetensors    further state a domain keeps with the model (an agent's networks, its
                              optimizer), one file per name, nested structures indexed in the metadata

``save_pretrained`` writes the whole folder atomically (a reader sees the previous bundle or the new one,
never a mix); ``load_pretrained`` checks every file it reads and rebuilds the denoiser on the asked device.
Nothing is pickled. The names follow the convention users know from diffusers and transformers.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import (
    CheckpointError,
    _decode,
    _encode,
    _read_json,
    _read_tensors,
    _unwrap,
    _write_json,
    _write_tensors,
    load_weights,
    network_spec,
)
from .denoiser import Denoiser
from .io import atomic_directory, recover_directory
from .runtime import resolve_device
from .schedules import Schedule, get_schedule

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "Bundle",
    "BundleError",
    "load_pretrained",
    "read_bundle_config",
    "save_pretrained",
]

BUNDLE_FORMAT = "steerdiff-bundle"
BUNDLE_VERSION = 1
CONFIG, MODEL = "config.json", "model.safetensors"


class BundleError(CheckpointError):
    """A model bundle is missing, incomplete, corrupt, of another domain or of a newer format."""


@dataclass
class Bundle:
    """A loaded model bundle."""

    path: Path
    domain: str  # which package the model belongs to ("music", ...)
    config: dict  # the domain section of config.json, without its name
    denoiser: Denoiser | None = None  # in eval mode, gradients off, on the asked device
    schedule: Schedule | None = None
    state: dict[str, Any] = field(default_factory=dict)  # further named state (tensors or nested dicts)
    meta: dict = field(default_factory=dict)  # the whole config.json


def _version() -> str:
    try:
        return metadata.version("steerdiff-core")
    except metadata.PackageNotFoundError:
        return "unknown"


def _state_dict(obj: Any) -> Any:
    if isinstance(obj, nn.Module):
        return _unwrap(obj).state_dict()
    if hasattr(obj, "state_dict") and callable(obj.state_dict):  # optimizers, schedulers
        return obj.state_dict()
    return obj


def save_pretrained(
    path,
    *,
    domain: str,
    config: Mapping | None = None,
    denoiser: Denoiser | None = None,
    schedule: Schedule | Mapping | None = None,
    state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a model bundle to the folder ``path`` atomically and return the path.

    ``domain``: the package the model belongs to; ``config``: a JSON-ready dict (or dataclass) of what that
    package needs to use the model; ``denoiser``: the network to sample with (pass the EMA copy of a training
    run); ``state``: further named state — modules, optimizers or (nested) dicts of tensors — each saved to
    ``<name>.safetensors`` and given back by ``load_pretrained`` as plain state dicts.
    """
    if not isinstance(domain, str) or not domain:
        raise ValueError("save_pretrained needs domain=..., the name of the package the model belongs to")
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    config = dict(config or {})
    if "name" in config:
        raise ValueError("the domain config may not use the key 'name' (it holds the domain's name)")
    state = dict(state or {})
    for name in state:
        if not name.isidentifier() or name == "model":
            raise ValueError(f"state name {name!r} must be a Python identifier other than 'model'")
    if isinstance(schedule, Schedule):
        schedule = schedule.to_dict()
    meta: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "library": {"steerdiff-core": _version(), "torch": torch.__version__},
        "domain": {"name": domain, **config},
        "network": None,
        "denoiser": None,
        "schedule": dict(schedule) if schedule else None,
        "state": sorted(state),
    }
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as err:
        raise ValueError(f"the bundle's config must be JSON-ready ({err})") from None
    with atomic_directory(path) as tmp:
        if denoiser is not None:
            net = _unwrap(denoiser.net)
            meta["network"] = network_spec(net)
            meta["denoiser"] = {
                "parametrization": denoiser.parametrization,
                "sigma_data": denoiser.sigma_data,
            }
            _write_tensors(tmp / MODEL, net.state_dict())
        for name, obj in state.items():
            tensors: dict[str, torch.Tensor] = {}
            index = _encode(_state_dict(obj), tensors, name)
            _write_tensors(tmp / f"{name}.safetensors", tensors, {"index": json.dumps(index)})
        _write_json(tmp / CONFIG, meta)  # last: a folder with config.json is complete
    return Path(path)


def read_bundle_config(path, domain: str | None = None) -> dict:
    """The checked ``config.json`` of the bundle at ``path`` (no tensors are read)."""
    path = Path(path)
    recover_directory(path)
    if not path.exists():
        raise BundleError(
            f"model folder {path} does not exist; give the folder a train command wrote "
            "(it holds config.json and model.safetensors)"
        )
    if not path.is_dir():
        raise BundleError(
            f"{path} is a file, but a model is a folder; give the folder that holds config.json"
        )
    if not (path / CONFIG).exists():
        others = sorted(p.name for p in path.glob("*.json"))
        hint = (
            f" It holds {', '.join(others)}: a model folder of steerdiff 0.1, which this version does not "
            "read; train the model again"
            if others
            else " Give the folder a train command wrote"
        )
        raise BundleError(f"{path} is not a steerdiff model bundle (no config.json).{hint}.")
    meta = _read_json(path / CONFIG, BundleError)
    if meta.get("format") != BUNDLE_FORMAT:
        kind = meta.get("format", "unknown")
        raise BundleError(
            f"{path / CONFIG} is a {kind!r} folder, not a model bundle; give the model folder "
            "a train command wrote (a training checkpoint only resumes training)"
        )
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise BundleError(f"{path / CONFIG} has no format_version; the bundle is corrupt, train it again")
    if version > BUNDLE_VERSION:
        raise BundleError(
            f"{path / CONFIG} has bundle format {version}, newer than this steerdiff reads "
            f"({BUNDLE_VERSION}); upgrade steerdiff-core"
        )
    section = meta.get("domain")
    if not isinstance(section, dict) or not isinstance(section.get("name"), str):
        raise BundleError(f"{path / CONFIG} has no domain section; the bundle is corrupt, train it again")
    if domain is not None and section["name"] != domain:
        raise BundleError(
            f"{path} holds a {section['name']!r} model, not a {domain!r} one; give a model "
            f"trained with steerdiff-{domain}"
            if domain != "core"
            else f"{path} holds a {section['name']!r} model; use steerdiff-{section['name']} for it"
        )
    return meta


def load_pretrained(
    path,
    domain: str | None = None,
    *,
    device: str | torch.device | None = "cpu",
    net: nn.Module | None = None,
) -> Bundle:
    """Load a model bundle; ``domain`` (if given) must match the one it was saved for.

    The network is rebuilt from config.json (``nets.build_network``); for a network outside that registry pass
    an instance as ``net``. ``device="auto"`` picks CUDA when present.
    """
    path = Path(path)
    meta = read_bundle_config(path, domain)
    device = resolve_device(device)
    section = dict(meta["domain"])
    bundle = Bundle(path=path, domain=section.pop("name"), config=section, meta=meta)
    if meta.get("schedule"):
        try:
            bundle.schedule = get_schedule(meta["schedule"])
        except (TypeError, ValueError) as err:
            raise BundleError(
                f"{path / CONFIG}: cannot rebuild the schedule {meta['schedule']!r} ({err})"
            ) from None
    if meta.get("denoiser"):
        weights, _ = _read_tensors(path / MODEL, error=BundleError)
        if net is None:
            spec = meta.get("network")
            if not spec:
                raise BundleError(
                    f"{path / CONFIG} names no registered network (the model was trained with a "
                    "custom module); pass an instance of that network as net=..."
                )
            from .nets import build_network

            try:
                net = build_network(spec["name"], **spec["config"])
            except (KeyError, TypeError, ValueError) as err:
                raise BundleError(f"{path / CONFIG}: cannot rebuild the network ({err})") from None
        load_weights(net, weights, path / MODEL)
        d = meta["denoiser"]
        try:
            denoiser = Denoiser(net, d["parametrization"], d["sigma_data"])
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(f"{path / CONFIG}: bad denoiser entry {d!r} ({err})") from None
        bundle.denoiser = denoiser.to(device).eval().requires_grad_(False)
    for name in meta.get("state", []):
        tensors, info = _read_tensors(path / f"{name}.safetensors", device, BundleError)
        try:
            bundle.state[name] = _decode(json.loads(info["index"]), tensors)
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(
                f"{path / name}.safetensors has a missing or corrupt index ({err!r}); the bundle "
                "is corrupt, save it again"
            ) from None
    return bundle
