"""Pendulum end to end: collect, train the trajectory model, train TD3+BC on real / unguided / guided data,
evaluate returns, dynamics error and policy likelihood, and plot."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from steerdiff.core.runtime import resolve_device

from .agents import make_agent
from .collect import collect
from .data import save_d4rl
from .diffusion import ModelConfig
from .evaluation import dynamics_error, evaluate_policy, policy_log_likelihood
from .pipeline import PolicyGuidedPipeline
from .plots import episode_windows, plot_return_curves, plot_state_trajectories
from .training import train_agent

__all__ = ["run_demo"]


def run_demo(out, quick: bool = True, seed: int = 0, device="auto", progress: bool = True) -> dict:
    """Run the Pendulum example into the folder ``out`` (dataset, model bundle, agent bundle, plots) and
    return its summary: returns, dynamics error and target-policy likelihood of real, unguided and guided
    data. ``quick``: a few minutes on a CPU; otherwise a larger setting."""
    out = Path(out)
    dev = resolve_device(device)
    size = (
        dict(steps=3000, model_steps=300, agent_steps=600, eval_every=200)
        if quick
        else dict(steps=20000, model_steps=3000, agent_steps=5000, eval_every=1000)
    )
    t0 = time.perf_counter()
    real = collect("Pendulum-v1", "replay", size["steps"], noise=0.1, seed=seed, progress=progress)
    save_d4rl(real, out / "pendulum-replay.hdf5")
    pipe = PolicyGuidedPipeline.train(
        real,
        ModelConfig(
            horizon=16,
            stride=4,
            base_channels=16,
            channel_mults=(1, 2),
            emb_dim=64,
            steps=size["model_steps"],
            seed=seed,
        ),
        checkpoint_dir=out / "training",
        device=dev,
        progress=progress,
    )
    pipe.save_pretrained(out / "model")
    curves, results = {}, {}
    for label, ratio, coeff in (("real", 0.0, 0.0), ("unguided", 0.5, 0.0), ("guided", 0.5, 1.0)):
        torch.manual_seed(seed)
        agent = make_agent(
            "td3bc",
            3,
            1,
            2.0,
            real.observations.mean(0),
            real.observations.std(0),
            device=dev,
            env_id="Pendulum-v1",
            hidden=128,
        )
        synth = pipe.synthesizer(coeff=coeff, num_samples=64, steps=16, seed=seed)
        hist = train_agent(
            agent,
            real,
            size["agent_steps"],
            128,
            synth,
            ratio,
            size["agent_steps"] // 3,
            seed,
            progress=progress,
            eval_every=size["eval_every"],
            callback=lambda s, ag: evaluate_policy(ag, "Pendulum-v1", 4, seed=10_000 + seed),
        )
        curves[label] = [(e["step"], e["return_mean"]) for e in hist["evals"]]
        results[label] = {"return": hist["evals"][-1]["return_mean"]}
        if label == "guided":
            target = agent
    target.save_pretrained(out / "agent")
    synthetic = {}
    for label, coeff in (("unguided", 0.0), ("guided", 1.0)):
        ds = pipe.synthesize(agent=target, coeff=coeff, num_samples=64, steps=16, seed=seed + 1)
        results[label].update(
            dynamics_mse=float(np.nanmean(dynamics_error(ds))),
            policy_log_likelihood=policy_log_likelihood(target, ds),
        )
        synthetic[label] = episode_windows(ds)
    results["real"]["policy_log_likelihood"] = policy_log_likelihood(target, real)
    plots = [
        str(plot_return_curves(curves, out / "returns.png", "Pendulum-v1, TD3+BC")),
        str(
            plot_state_trajectories(
                episode_windows(real), synthetic, out / "states.png", names=["cos θ", "sin θ", "θ dot"]
            )
        ),
    ]
    return {
        "env": "Pendulum-v1",
        "results": results,
        "curves": curves,
        "plots": plots,
        "model": str(out / "model"),
        "agent": str(out / "agent"),
        "seconds": time.perf_counter() - t0,
        "quick": quick,
    }
