"""Agent training on real, synthetic or mixed batches, synthetic data regenerated from the current policy.

``train_agent(agent, real, steps, synthesizer=..., synth_ratio=..., regenerate_every=K)``: each batch holds
round(batch_size * synth_ratio) synthetic transitions and the rest real ones (the paper: 240 of 256). The
synthetic set is made by ``synthesizer(policy)`` — unguided first (``policy=None``), then from the current
agent every K updates, as in policy-guided diffusion. ``synth_ratio=0`` is real-only training;
``synth_ratio=1`` drops real data entirely. ``resume=True`` continues an agent from its update step (an agent
loaded from a bundle with :func:`steerdiff.policy.load_agent`); ``save(step, agent)`` runs every
``save_every`` updates and at the end (e.g. ``lambda step, agent: agent.save_pretrained(path)``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .data import OfflineDataset

__all__ = ["TransitionBuffer", "train_agent"]


class TransitionBuffer:
    """A dataset as tensors, sampled uniformly with an explicit generator."""

    def __init__(self, dataset: OfflineDataset, device="cpu"):
        self.tensors = {
            "obs": torch.from_numpy(dataset.observations),
            "action": torch.from_numpy(dataset.actions),
            "reward": torch.from_numpy(dataset.rewards),
            "done": torch.from_numpy(dataset.terminals.astype(np.float32)),
            "next_obs": torch.from_numpy(dataset.next_observations),
        }
        self.tensors = {k: v.to(device) for k, v in self.tensors.items()}
        self.size = len(dataset)

    def sample(self, n: int, generator: torch.Generator) -> dict:
        idx = torch.randint(0, self.size, (n,), generator=generator)
        return {k: v[idx.to(v.device)] for k, v in self.tensors.items()}


def train_agent(
    agent,
    real: OfflineDataset | None,
    steps: int,
    batch_size: int = 256,
    synthesizer: Callable | None = None,
    synth_ratio: float = 0.0,
    regenerate_every: int = 10_000,
    seed: int = 0,
    progress: bool = False,
    callback: Callable | None = None,
    eval_every: int = 0,
    resume: bool = False,
    save: Callable | None = None,
    save_every: int = 0,
) -> dict:
    """Train ``agent`` up to ``steps`` updates. ``callback(step, agent)`` runs every ``eval_every`` updates
    and its return values are collected in the history (e.g. evaluation returns).

    ``resume``: start at ``agent.updates`` (the step a saved agent reached) instead of 0; batches are then
    drawn from a generator seeded by (seed, step), and the first synthetic set comes from the agent itself.
    ``save(step, agent)`` runs every ``save_every`` updates and after the last one."""
    if not 0.0 <= synth_ratio <= 1.0:
        raise ValueError(f"synth_ratio must lie in [0, 1], got {synth_ratio}")
    if synth_ratio > 0 and synthesizer is None:
        raise ValueError("synth_ratio > 0 needs a synthesizer(policy) -> OfflineDataset")
    if synth_ratio < 1 and real is None:
        raise ValueError("real-data batches need a real dataset; pass real=... or set synth_ratio=1")
    if regenerate_every < 1:
        raise ValueError(f"regenerate_every must be >= 1, got {regenerate_every}")
    device = agent.obs_mean.device
    if real is not None:
        real.check_env(agent.config.obs_dim, agent.config.act_dim)
    n_synth = int(round(batch_size * synth_ratio))
    n_real = batch_size - n_synth
    start = int(agent.updates) if resume else 0
    if start > steps:
        raise ValueError(
            f"the agent has already made {start} updates, more than the {steps} asked for; ask for "
            f"more steps to continue it"
        )
    gen = torch.Generator().manual_seed(seed if start == 0 else seed * 1_000_003 + start)
    real_buf = TransitionBuffer(real, device) if n_real else None
    synth_buf = None
    history = {"losses": [], "evals": [], "regenerations": 0, "start": start}
    it = range(start, steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"train {agent.name}", initial=start, total=steps)
    for step in it:
        if n_synth and (step % regenerate_every == 0 or synth_buf is None):
            synth_buf = TransitionBuffer(synthesizer(agent if step > 0 else None), device)
            history["regenerations"] += 1
        parts = [b.sample(n, gen) for b, n in ((real_buf, n_real), (synth_buf, n_synth)) if n]
        batch = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        agent.train()
        out = agent.update(batch)
        if step % 100 == 0 or step == steps - 1:
            history["losses"].append({"step": step + 1, **out})
        if callback is not None and eval_every and ((step + 1) % eval_every == 0 or step == steps - 1):
            agent.eval()
            history["evals"].append({"step": step + 1, **callback(step + 1, agent)})
        if save is not None and save_every and (step + 1) % save_every == 0 and step != steps - 1:
            agent.eval()
            save(step + 1, agent)
    agent.eval()
    if save is not None:
        save(steps, agent)
    return history
