"""Sharded sampling: one sampling job over several processes (torchrun), resumable, equal to one process.

A job that draws many samples (forecast paths, generated pieces, synthetic trajectories, inverse-problem
solutions) is cut into chunks of items. Chunk ``c`` always gets the same random stream (a generator seeded
from the job's seed and ``c``), so the result does not depend on how many processes share the work. Under
``torchrun`` rank ``r`` of ``W`` takes chunks ``r, r + W, ...``; every chunk is written atomically to
``<out_dir>/shards/`` as soon as it is done; rank 0 merges them in chunk order. A killed run started again
skips the chunks already on disk, so it resumes where it stopped.

    def job(start, stop, generator):              # items [start, stop) with this chunk's generator
        x = sigmas[0] * torch.randn(stop - start, 2, generator=generator)
        return {"samples": sample(model, x, sigmas, "ddpm", generator=generator).x}

    merged = sample_in_shards(job, 1000, "runs/big", chunk_size=100, seed=0)   # rank 0: the merged dict

Works with gloo on CPU and nccl on GPU; a single process (no torchrun) runs every chunk itself.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .io import atomic_path, write_json

__all__ = ["chunk_seed", "fingerprint", "join_process_group", "sample_in_shards", "shard_options"]

Job = Callable[[int, int, torch.Generator], Mapping[str, torch.Tensor] | torch.Tensor]


def chunk_seed(seed: int, chunk: int) -> int:
    """The seed of one chunk's generator: distinct per chunk, the same whatever the number of processes."""
    return (int(seed) * 1_000_003 + 7919 * (chunk + 1)) % 2**63


def fingerprint(*items: torch.nn.Module | torch.Tensor) -> str:
    """A short hash of networks' weights and tensors: what a shard of a job's samples depends on (for
    ``key``)."""
    h = hashlib.sha256()
    for item in items:
        named = sorted(item.state_dict().items()) if isinstance(item, torch.nn.Module) else [("", item)]
        for name, t in named:
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def join_process_group() -> None:
    """Under torchrun, join the process group for the rest of the process (left at exit), so that several
    sharded jobs can follow each other in one launch. Does nothing in a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())


def shard_options(out_dir, chunk_size: int | None, default: int = 16) -> dict:
    """What a command passes to a sharded job from its ``--chunk-size``: nothing (one batch) in a single
    process without the flag; ``shards=out_dir`` with the given chunk size, or ``default`` under torchrun."""
    if chunk_size is None and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return {}
    return {"shards": Path(out_dir), "chunk_size": int(chunk_size or default)}


def _world() -> tuple[int, int, bool]:
    """(rank, world size, whether this call created the process group)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist

    created = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        created = True
    return dist.get_rank(), dist.get_world_size(), created


def _shard_path(folder: Path, chunk: int) -> Path:
    return folder / f"chunk-{chunk:06d}.safetensors"


def _read_shard(path: Path) -> dict[str, torch.Tensor] | None:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError):
        return None  # cut or damaged: computed again


def sample_in_shards(
    job: Job,
    num_items: int,
    out_dir,
    *,
    chunk_size: int = 64,
    seed: int = 0,
    resume: bool = True,
    progress: bool = False,
    key: dict | None = None,
) -> dict[str, torch.Tensor] | torch.Tensor | None:
    """Run ``job(start, stop, generator)`` over ``num_items`` items in chunks, sharded over torchrun ranks.

    The job returns a tensor or a dict of tensors with one row per item. Returns the merged result (a tensor
    or a dict, as the job returns) on rank 0 and ``None`` on other ranks. ``out_dir/shards`` keeps each
    chunk; ``resume=False`` computes every chunk again. ``key`` (JSON-ready) describes what else the job
    depends on (the model, the sampler settings): shards of a job with another key are never reused.
    """
    if num_items < 1 or chunk_size < 1:
        raise ValueError(f"num_items and chunk_size must be positive, got {num_items} and {chunk_size}")
    folder = Path(out_dir) / "shards"
    folder.mkdir(parents=True, exist_ok=True)
    spans = [(a, min(a + chunk_size, num_items)) for a in range(0, num_items, chunk_size)]
    plan = {"num_items": num_items, "chunk_size": chunk_size, "seed": int(seed), "key": key}
    plan_path = folder / "plan.json"
    rank, world, created = _world()
    try:
        if rank == 0:
            if resume and plan_path.exists() and json.loads(plan_path.read_text()) != plan:
                raise ValueError(
                    f"{folder} holds shards of another job ({plan_path.read_text().strip()}); use "
                    "another out_dir, the same settings, or resume=False"
                )
            write_json(plan_path, plan)
        if world > 1:
            torch.distributed.barrier()
        mine = range(rank, len(spans), world)
        if progress and rank == 0:
            from tqdm.auto import tqdm

            mine = tqdm(mine, desc=f"sampling chunks (rank 0 of {world})", leave=False)
        for c in mine:
            a, b = spans[c]
            path = _shard_path(folder, c)
            if resume and path.exists() and _read_shard(path) is not None:
                continue
            gen = torch.Generator().manual_seed(chunk_seed(seed, c))
            out = job(a, b, gen)
            tensors = {"__tensor__": out} if isinstance(out, torch.Tensor) else dict(out)
            for name, t in tensors.items():
                if not isinstance(t, torch.Tensor) or t.ndim == 0 or t.shape[0] != b - a:
                    raise ValueError(
                        f"the job returned {name!r} without one row per item ({b - a}) for items {a}..{b - 1}"
                    )
            with atomic_path(path) as tmp:
                save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        if world > 1:
            torch.distributed.barrier()
        if rank != 0:
            return None
        parts = []
        for c in range(len(spans)):
            shard = _read_shard(_shard_path(folder, c))
            if shard is None:
                raise ValueError(f"chunk {c} is missing from {folder}; run the job again to finish it")
            parts.append(shard)
        merged = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        return merged["__tensor__"] if set(merged) == {"__tensor__"} else merged
    finally:
        if created:
            torch.distributed.destroy_process_group()
