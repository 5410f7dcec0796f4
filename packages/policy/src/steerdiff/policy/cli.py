"""``steerdiff-policy``: collect -> train -> synthesize -> train-agent -> evaluate, and an end-to-end demo.

Every subcommand takes ``--seed``, ``--device`` (auto|cpu|cuda) and ``--out`` and writes a JSON summary of
its metrics (``summary.json`` in the output folder, or beside the output file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["build_parser", "main", "run_demo"]


def _write_json(path, data) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    os.replace(tmp, path)
    return path


def _device(name: str) -> torch.device:
    from steerdiff.core.training import resolve_device

    return resolve_device(name)


def _summary_path(out: Path) -> Path:
    return out.with_suffix(".json") if out.suffix else out / "summary.json"


# ---------------------------------------------------------------------------------------------- commands

def cmd_collect(a) -> dict:
    from .collect import collect
    from .data import save_d4rl, save_minari

    ds = collect(a.env, a.behaviour, a.steps, noise=a.noise, seed=a.seed, max_episode_steps=a.max_episode_steps,
                 progress=True)
    out = Path(a.out)
    save_d4rl(ds, out)
    if a.minari_id:
        save_minari(ds, a.minari_id)
    from .envs import normalized_score

    ret = ds.episode_returns()
    norm = normalized_score(a.env, ret)
    summary = {"env": a.env, "behaviour": a.behaviour, "transitions": len(ds), "episodes": len(ret),
               "return_mean": float(ret.mean()), "normalized_mean": None if norm is None else float(norm.mean()),
               "path": str(out)}
    _write_json(_summary_path(out), summary)
    return summary


def cmd_train(a) -> dict:
    from .data import load_dataset
    from .diffusion import ModelConfig, TrajectoryDiffusion

    ds = load_dataset(a.data)
    cfg = ModelConfig(horizon=a.horizon, stride=a.stride, base_channels=a.base_channels, steps=a.steps,
                      batch_size=a.batch_size, lr=a.lr, seed=a.seed)
    t0 = time.perf_counter()
    model = TrajectoryDiffusion.fit(ds, cfg, out_dir=a.out, device=_device(a.device))
    summary = {"data": a.data, "env": ds.env_id, "steps": a.steps, "final_loss": float(np.mean(model.losses[-20:])),
               "seconds": time.perf_counter() - t0, "model_dir": a.out}
    _write_json(Path(a.out) / "summary.json", summary)
    return summary


def _synthesizer(model, a, coeff):
    from .diffusion import SamplerConfig
    from .synthesis import Synthesizer

    return Synthesizer(model, num=a.num, length=a.length, coeff=coeff, normalize=not a.no_grad_norm,
                       sampler=SamplerConfig(steps=a.sampler_steps), seed=a.seed)


def cmd_synthesize(a) -> dict:
    from .agents import load_agent
    from .data import save_d4rl
    from .diffusion import TrajectoryDiffusion
    from .evaluation import policy_log_likelihood

    dev = _device(a.device)
    model = TrajectoryDiffusion.load(a.model, device=dev)
    agent = load_agent(a.agent, device=dev) if a.agent else None
    ds = _synthesizer(model, a, a.coeff)(agent)
    save_d4rl(ds, a.out)
    summary = {"transitions": len(ds), "coeff": a.coeff if agent else 0.0, "path": a.out,
               "costs": {k: v for k, v in ds.metadata.items() if k != "synthetic"}}
    if agent is not None:
        summary["policy_log_likelihood"] = policy_log_likelihood(agent, ds)
    _write_json(_summary_path(Path(a.out)), summary)
    return summary


AGENT_OPTIONS = {"td3bc": ("alpha",), "iql": ("expectile", "beta")}  # train-agent's per-agent flags


def cmd_train_agent(a) -> dict:
    from .agents import make_agent
    from .data import load_dataset
    from .diffusion import TrajectoryDiffusion
    from .envs import action_bounds
    from .evaluation import evaluate_policy
    from .plots import plot_return_curves
    from .training import train_agent

    flags = [k for keys in AGENT_OPTIONS.values() for k in keys]
    options = {k: getattr(a, k) for k in flags if getattr(a, k) is not None}
    foreign = [k for k in options if k not in AGENT_OPTIONS[a.agent]]
    if foreign:
        raise ValueError(f"--{foreign[0]} is not a {a.agent} setting; {a.agent} takes "
                         f"{', '.join('--' + k for k in AGENT_OPTIONS[a.agent])}")
    dev = _device(a.device)
    real = load_dataset(a.data)
    env_id = a.env or real.env_id
    torch.manual_seed(a.seed)
    agent = make_agent(a.agent, real.obs_dim, real.act_dim, action_bounds(env_id), real.observations.mean(0),
                       real.observations.std(0), device=dev, hidden=a.hidden, **options)
    synth = None
    if a.model:
        synth = _synthesizer(TrajectoryDiffusion.load(a.model, device=dev), a, a.coeff)
    elif a.synth_ratio > 0:
        raise SystemExit("--synth-ratio > 0 needs --model (a trajectory model from `steerdiff-policy train`)")

    def evaluate(step, ag):
        return evaluate_policy(ag, env_id, a.eval_episodes, seed=10_000 + a.seed)

    hist = train_agent(agent, real, a.steps, a.batch_size, synth, a.synth_ratio if a.model else 0.0,
                       a.regenerate_every, a.seed, progress=True, callback=evaluate, eval_every=a.eval_every)
    out = Path(a.out)
    agent.save(out)
    curve = [(e["step"], e["return_mean"]) for e in hist["evals"]]
    plot_return_curves({f"{a.agent} ({'synthetic ' + str(a.synth_ratio) if a.model else 'real'})": curve},
                       out / "returns.png", title=env_id)
    summary = {"agent": a.agent, "env": env_id, "steps": a.steps, "synth_ratio": a.synth_ratio if a.model else 0.0,
               "coeff": a.coeff, "regenerations": hist["regenerations"], "final": hist["evals"][-1] if hist["evals"]
               else None, "curve": curve}
    _write_json(out / "summary.json", summary)
    return summary


def cmd_evaluate(a) -> dict:
    from .agents import load_agent
    from .data import load_dataset
    from .evaluation import dynamics_error, evaluate_policy, policy_log_likelihood
    from .plots import plot_state_trajectories

    out = Path(a.out)
    summary = {}
    agent = load_agent(a.agent, device=_device(a.device)) if a.agent else None
    if agent is not None:
        if not a.env:
            raise SystemExit("evaluate --agent needs --env (the environment to run it in)")
        summary["policy"] = evaluate_policy(agent, a.env, a.episodes, seed=a.seed)
    if a.synthetic:
        syn = load_dataset(a.synthetic)
        env_id = a.env or syn.env_id
        err = dynamics_error(syn, env_id, max_transitions=a.max_transitions, seed=a.seed)
        summary["synthetic"] = {"transitions": len(syn), "dynamics_mse_mean": float(np.nanmean(err)),
                                "dynamics_mse_median": float(np.nanmedian(err)),
                                "identifiable_fraction": float(np.mean(np.isfinite(err)))}
        if agent is not None:
            summary["synthetic"]["policy_log_likelihood"] = policy_log_likelihood(agent, syn)
        if a.data:
            real = load_dataset(a.data)
            summary["plot"] = str(plot_state_trajectories(_episode_windows(real), {"synthetic": _episode_windows(syn)},
                                                         out / "states.png"))
    if not summary:
        raise SystemExit("nothing to evaluate: pass --agent (with --env) and/or --synthetic")
    _write_json(out / "summary.json", summary)
    return summary


def _episode_windows(ds, max_windows: int = 8) -> np.ndarray:
    """The first rows of up to 8 episodes as (n, L, obs_dim) state sequences (L = the shortest shown)."""
    bounds = ds.episode_bounds()[:max_windows]
    length = min(b - a for a, b in bounds)
    return np.stack([ds.observations[a:a + length] for a, _ in bounds])


def run_demo(out, quick: bool = True, seed: int = 0, device: str = "auto", progress: bool = True) -> dict:
    """Pendulum end to end: collect, train the trajectory model, train TD3+BC on real / unguided / guided
    data, evaluate returns, dynamics error and policy likelihood, and plot."""
    from .agents import make_agent
    from .collect import collect
    from .data import save_d4rl
    from .diffusion import ModelConfig, SamplerConfig, TrajectoryDiffusion
    from .evaluation import dynamics_error, evaluate_policy, policy_log_likelihood
    from .plots import plot_return_curves, plot_state_trajectories
    from .synthesis import Synthesizer
    from .training import train_agent

    out = Path(out)
    dev = _device(device)
    size = dict(steps=3000, model_steps=300, agent_steps=600, eval_every=200) if quick else \
        dict(steps=20000, model_steps=3000, agent_steps=5000, eval_every=1000)
    t0 = time.perf_counter()
    real = collect("Pendulum-v1", "replay", size["steps"], noise=0.1, seed=seed, progress=progress)
    save_d4rl(real, out / "pendulum-replay.hdf5")
    model = TrajectoryDiffusion.fit(real, ModelConfig(horizon=16, stride=4, base_channels=16, channel_mults=(1, 2),
                                                      emb_dim=64, steps=size["model_steps"], seed=seed),
                                    out_dir=out / "model", device=dev, progress=progress)
    sampler = SamplerConfig(steps=16)
    curves, results = {}, {}
    for label, ratio, coeff in (("real", 0.0, 0.0), ("unguided", 0.5, 0.0), ("guided", 0.5, 1.0)):
        torch.manual_seed(seed)
        agent = make_agent("td3bc", 3, 1, 2.0, real.observations.mean(0), real.observations.std(0), device=dev,
                           hidden=128)
        synth = Synthesizer(model, num=64, coeff=coeff, sampler=sampler, seed=seed)
        hist = train_agent(agent, real, size["agent_steps"], 128, synth, ratio, size["agent_steps"] // 3, seed,
                           progress=progress, eval_every=size["eval_every"],
                           callback=lambda s, ag: evaluate_policy(ag, "Pendulum-v1", 4, seed=10_000 + seed))
        curves[label] = [(e["step"], e["return_mean"]) for e in hist["evals"]]
        results[label] = {"return": hist["evals"][-1]["return_mean"]}
        if label == "guided":
            target = agent
    for label, coeff in (("unguided", 0.0), ("guided", 1.0)):
        ds = Synthesizer(model, num=64, coeff=coeff, sampler=sampler, seed=seed + 1)(target)
        results[label].update(dynamics_mse=float(np.nanmean(dynamics_error(ds))),
                              policy_log_likelihood=policy_log_likelihood(target, ds))
        if label == "guided":
            guided_ds = ds
        else:
            unguided_ds = ds
    results["real"]["policy_log_likelihood"] = policy_log_likelihood(target, real)
    plots = [str(plot_return_curves(curves, out / "returns.png", "Pendulum-v1, TD3+BC")),
             str(plot_state_trajectories(_episode_windows(real), {"unguided": _episode_windows(unguided_ds),
                                                                   "guided": _episode_windows(guided_ds)},
                                         out / "states.png", names=["cos θ", "sin θ", "θ dot"]))]
    summary = {"env": "Pendulum-v1", "results": results, "curves": curves, "plots": plots,
               "seconds": time.perf_counter() - t0, "quick": quick}
    _write_json(out / "summary.json", summary)
    return summary


def cmd_demo(a) -> dict:
    return run_demo(a.out, quick=not a.full, seed=a.seed, device=a.device)


# ------------------------------------------------------------------------------------------------ parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="steerdiff-policy", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, out_help):
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
        sp.add_argument("--out", required=True, help=out_help)
        sp.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a small shared machine more threads are slower)")

    def synth_opts(sp):
        sp.add_argument("--coeff", type=float, default=1.0, help="policy guidance coefficient (0: unguided)")
        sp.add_argument("--num", type=int, default=64, help="windows per synthetic set")
        sp.add_argument("--length", type=int, default=None, help="rows per window (default: training horizon)")
        sp.add_argument("--sampler-steps", type=int, default=32)
        sp.add_argument("--no-grad-norm", action="store_true", help="do not normalise the guidance gradient")

    s = sub.add_parser("collect", help="roll out a behaviour policy and write a D4RL HDF5 file")
    common(s, "output .hdf5 path")
    s.add_argument("--env", default="Pendulum-v1")
    s.add_argument("--behaviour", default="replay", choices=["random", "scripted", "replay"])
    s.add_argument("--steps", type=int, default=20000)
    s.add_argument("--noise", type=float, default=0.1)
    s.add_argument("--max-episode-steps", type=int, default=None)
    s.add_argument("--minari-id", default=None, help="also write a local Minari dataset with this id")
    s.set_defaults(fn=cmd_collect)

    s = sub.add_parser("train", help="train the trajectory diffusion model on a dataset")
    common(s, "model directory")
    s.add_argument("--data", required=True, help="D4RL .hdf5 path or minari:<dataset_id>")
    s.add_argument("--horizon", type=int, default=32)
    s.add_argument("--stride", type=int, default=8)
    s.add_argument("--base-channels", type=int, default=32)
    s.add_argument("--steps", type=int, default=2000)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--lr", type=float, default=1e-3)
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("synthesize", help="sample a synthetic dataset (policy-guided with --agent)")
    common(s, "output .hdf5 path")
    s.add_argument("--model", required=True)
    s.add_argument("--agent", default=None, help="target policy directory (from train-agent)")
    synth_opts(s)
    s.set_defaults(fn=cmd_synthesize)

    s = sub.add_parser("train-agent", help="train TD3+BC or IQL on real, synthetic or mixed batches")
    common(s, "agent directory")
    s.add_argument("--data", required=True)
    s.add_argument("--env", default=None, help="environment (default: the dataset's)")
    s.add_argument("--agent", default="td3bc", choices=["td3bc", "iql"])
    s.add_argument("--steps", type=int, default=10000)
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--hidden", type=int, default=256)
    s.add_argument("--alpha", type=float, default=None, help="TD3+BC: weight of the Q term (default 2.5)")
    s.add_argument("--expectile", type=float, default=None, help="IQL: expectile of the value (default 0.7)")
    s.add_argument("--beta", type=float, default=None,
                   help="IQL: inverse temperature of the advantage weights (default 3, for D4RL-normalised "
                   "rewards; with raw rewards choose it on validation episodes, e.g. 0.1 on Pendulum)")
    s.add_argument("--model", default=None, help="trajectory model for synthetic data")
    s.add_argument("--synth-ratio", type=float, default=0.0, help="synthetic fraction of each batch")
    s.add_argument("--regenerate-every", type=int, default=2000)
    s.add_argument("--eval-every", type=int, default=1000)
    s.add_argument("--eval-episodes", type=int, default=5)
    synth_opts(s)
    s.set_defaults(fn=cmd_train_agent)

    s = sub.add_parser("evaluate", help="returns in the simulator; dynamics error and likelihood of synthetic data")
    common(s, "output directory")
    s.add_argument("--agent", default=None)
    s.add_argument("--env", default=None)
    s.add_argument("--episodes", type=int, default=10)
    s.add_argument("--synthetic", default=None, help="synthetic dataset to check against the simulator")
    s.add_argument("--data", default=None, help="real dataset, to plot real vs synthetic states")
    s.add_argument("--max-transitions", type=int, default=5000)
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("demo", help="Pendulum end to end on a small setting (a few minutes on CPU)")
    common(s, "output directory")
    s.add_argument("--full", action="store_true", help="the larger setting")
    s.set_defaults(fn=cmd_demo)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        summary = args.fn(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"steerdiff-policy {args.command}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
