"""``steerdiff-policy``: collect -> train -> synthesize -> train-agent -> evaluate, and an end-to-end demo.

Every subcommand takes ``--out`` (a folder: the run's files and ``summary.json`` go there), ``--seed``,
``--device``, ``--threads`` and ``--json``; a user error exits with code 2 and one line naming the problem
and the fix.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from steerdiff.core.command import (
    UsageError,
    add_command_presets,
    add_runtime_flags,
    add_sampling_flags,
    existing_dir,
    make_parser,
    nonnegative_float,
    positive_float,
    positive_int,
    probability,
    run_command,
    subcommands,
)
from steerdiff.core.sharding import shard_options

from .agents import AGENTS, AgentConfig, load_agent, make_agent
from .collect import BEHAVIOURS, collect
from .data import OfflineDataset, check_dataset_env, load_dataset, save_d4rl, save_minari, terminal_fraction
from .demo import run_demo
from .diffusion import PADDINGS, ModelConfig
from .envs import SUPPORTED, action_bounds, env_dims, normalized_score
from .evaluation import dynamics_error, evaluate_policy, policy_log_likelihood
from .pipeline import PolicyGuidedPipeline
from .plots import episode_windows, plot_return_curves, plot_state_trajectories
from .presets import PRESETS
from .training import train_agent

__all__ = ["build_parser", "main"]

PROG = "steerdiff-policy"
DATASET, SYNTHETIC, MODEL, AGENT = "data.hdf5", "synthetic.hdf5", "model", "agent"
AGENT_OPTIONS = {"td3bc": ("alpha",), "iql": ("expectile", "beta")}  # train-agent's per-agent flags


# ---------------------------------------------------------------------------------------------- helpers


def _read_dataset(source: str, env: str | None = None) -> tuple[OfflineDataset, str]:
    """Load a dataset and check it against its environment as it is read, before any training."""
    ds = load_dataset(source, env_id=env, check=False)
    env_id = ds.env_id
    if env_id is None:
        raise UsageError(
            f"{source} names no environment (D4RL files carry none); pass --env, one of "
            f"{', '.join(SUPPORTED)}"
        )
    if env_id not in SUPPORTED:
        raise UsageError(
            f"{source} names the environment {env_id!r}, which is not supported; pass --env, one of "
            f"{', '.join(SUPPORTED)}"
        )
    check_dataset_env(ds, source)
    return ds, env_id


def _data_summary(ds: OfflineDataset) -> dict:
    """What a dataset holds, counted as read: transitions, episodes and how they end."""
    lengths = np.diff(np.asarray(ds.episode_bounds()), axis=1)[:, 0]
    out = {
        "transitions": len(ds),
        "episodes": len(lengths),
        "median_episode_length": float(np.median(lengths)),
        "terminals": int(ds.terminals.sum()),
        "terminal_fraction": terminal_fraction(ds),
    }
    if "inferred_timeouts" in ds.metadata:
        out["inferred_timeouts"] = int(ds.metadata["inferred_timeouts"])
    return out


def _load_pipeline(path, device) -> PolicyGuidedPipeline:
    return PolicyGuidedPipeline.from_pretrained(path, device=device)


def _load_agent(path, device, pipe: PolicyGuidedPipeline | None = None):
    agent = load_agent(path, device=device)
    if pipe is not None:
        pipe.check_agent(agent)
    return agent


def _synth_kwargs(a) -> dict:
    return dict(
        coeff=a.coeff,
        num_samples=a.num_samples,
        steps=a.steps,
        solver=a.solver,
        length=a.length,
        seed=a.seed,
        normalize_gradient=not a.no_grad_norm,
    )


# ---------------------------------------------------------------------------------------------- commands


def cmd_collect(a) -> dict:
    ds = collect(
        a.env,
        a.behaviour,
        a.transitions,
        noise=a.noise,
        seed=a.seed,
        max_episode_steps=a.max_episode_steps,
        progress=not a.quiet,
    )
    path = save_d4rl(ds, a.out / DATASET)
    if a.minari_id:
        save_minari(ds, a.minari_id)
    ret = ds.episode_returns()
    norm = normalized_score(a.env, ret)
    return {
        "env": a.env,
        "behaviour": a.behaviour,
        **_data_summary(ds),
        "return_mean": float(ret.mean()),
        "normalized_mean": None if norm is None else float(norm.mean()),
        "dataset": str(path),
    }


def cmd_train(a) -> dict:
    ds, env_id = _read_dataset(a.data, a.env)
    cfg = ModelConfig(
        horizon=a.horizon,
        stride=a.stride,
        padding=a.padding,
        min_coverage=a.min_coverage,
        base_channels=a.base_channels,
        steps=a.train_steps,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
    )
    t0 = time.perf_counter()
    pipe = PolicyGuidedPipeline.train(ds, cfg, checkpoint_dir=a.out, device=a.device, progress=not a.quiet)
    model = pipe.save_pretrained(a.out / MODEL)
    cov = pipe.model.coverage
    return {
        "data": a.data,
        "env": env_id,
        **_data_summary(ds),
        "horizon": a.horizon,
        "padding": a.padding,
        "windows": cov["windows"],
        "transitions_used": cov["transitions_used"],
        "transitions_used_fraction": cov["fraction"],
        "padding_fraction": cov["padding_fraction"],
        "train_steps": a.train_steps,
        "final_loss": float(np.mean(pipe.model.losses[-20:])),
        "seconds": time.perf_counter() - t0,
        "model": str(model),
    }


def cmd_synthesize(a) -> dict | None:
    pipe = _load_pipeline(a.model, a.device)
    agent = _load_agent(a.agent, a.device, pipe) if a.agent else None
    shards = shard_options(a.out, a.chunk_size, default=64)
    if shards:
        shards["progress"] = not a.quiet
    ds = pipe.synthesize(agent=agent, **_synth_kwargs(a), **shards)
    if ds is None:  # a torchrun rank other than 0: rank 0 merges, writes and reports
        return None
    path = save_d4rl(ds, a.out / SYNTHETIC)
    summary = {
        "transitions": len(ds),
        "episodes": len(ds.episode_bounds()),
        "terminals": int(ds.terminals.sum()),
        "terminal_fraction": terminal_fraction(ds),
        "coeff": a.coeff if agent else 0.0,
        "dataset": str(path),
        "chunk_size": shards.get("chunk_size"),
        "costs": {k: v for k, v in ds.metadata.items() if k != "synthetic"},
    }
    if agent is not None:
        summary["policy_log_likelihood"] = policy_log_likelihood(agent, ds)
    return summary


def cmd_train_agent(a) -> dict:
    options = {k: getattr(a, k) for keys in AGENT_OPTIONS.values() for k in keys if getattr(a, k) is not None}
    foreign = [k for k in options if k not in AGENT_OPTIONS[a.agent]]
    if foreign:
        raise UsageError(
            f"--{foreign[0]} is not a {a.agent} setting; {a.agent} takes "
            f"{', '.join('--' + k for k in AGENT_OPTIONS[a.agent])}"
        )
    if a.synth_ratio > 0 and not a.model:
        raise UsageError(
            "--synth-ratio > 0 needs --model (a trajectory model folder from steerdiff-policy train)"
        )
    AgentConfig(obs_dim=1, act_dim=1, hidden=a.hidden, **options)  # checks the values before anything is read
    real, env_id = _read_dataset(a.data, a.env)
    pipe = _load_pipeline(a.model, a.device) if a.model else None
    if pipe is not None and pipe.env_id not in (None, env_id):
        raise UsageError(
            f"the trajectory model {a.model} was trained on {pipe.env_id} data but the dataset is {env_id}; "
            f"pass a model trained on {env_id} data (steerdiff-policy train --data {a.data})"
        )
    out = a.out / AGENT
    if a.resume and (out / "config.json").exists():
        agent = _load_agent(out, a.device, pipe)
        if agent.name != a.agent:
            raise UsageError(
                f"{out} holds a {agent.name} agent, not {a.agent}; pass --agent {agent.name} to "
                "resume it, or another --out"
            )
        real.check_env(agent.config.obs_dim, agent.config.act_dim, env_id)
        if agent.env_id not in (None, env_id):
            raise UsageError(
                f"{out} holds an agent of {agent.env_id} but the dataset is {env_id}; pass another --out "
                f"to train a new agent, or the --data and --env it was trained on"
            )
    else:
        agent = make_agent(
            a.agent,
            real.obs_dim,
            real.act_dim,
            action_bounds(env_id),
            real.observations.mean(0),
            real.observations.std(0),
            device=a.device,
            env_id=env_id,
            hidden=a.hidden,
            **options,
        )
        if pipe is not None:
            pipe.check_agent(agent)
    start = agent.updates
    synth = pipe.synthesizer(**_synth_kwargs(a)) if pipe is not None else None

    def evaluate(step, ag):
        return evaluate_policy(ag, env_id, a.eval_episodes, seed=10_000 + a.seed)

    hist = train_agent(
        agent,
        real,
        a.train_steps,
        a.batch_size,
        synth,
        a.synth_ratio if pipe else 0.0,
        a.regenerate_every,
        a.seed,
        progress=not a.quiet,
        callback=evaluate,
        eval_every=a.eval_every,
        resume=a.resume,
        save=lambda step, ag: ag.save_pretrained(out),
        save_every=a.save_every,
    )
    curve = [(e["step"], e["return_mean"]) for e in hist["evals"]]
    label = f"{a.agent} ({'synthetic ' + str(a.synth_ratio) if pipe else 'real'})"
    plot = plot_return_curves({label: curve}, a.out / "returns.png", title=env_id)
    return {
        "agent": a.agent,
        "env": env_id,
        "data": _data_summary(real),
        "train_steps": a.train_steps,
        "resumed_from": start,
        "synth_ratio": a.synth_ratio if pipe else 0.0,
        "coeff": a.coeff,
        "regenerations": hist["regenerations"],
        "final": hist["evals"][-1] if hist["evals"] else None,
        "curve": curve,
        "agent_bundle": str(out),
        "plot": str(plot),
    }


def cmd_evaluate(a) -> dict:
    if not a.agent and not a.synthetic and not a.data:
        raise UsageError("nothing to evaluate: pass --agent (with --env), --synthetic and/or --data")
    if a.agent and not a.env:
        raise UsageError("evaluate --agent needs --env (the environment to run it in)")
    agent = _load_agent(a.agent, a.device) if a.agent else None
    syn = _read_dataset(a.synthetic, a.env)[0] if a.synthetic else None
    real = _read_dataset(a.data, a.env or (syn.env_id if syn is not None else None))[0] if a.data else None
    if agent is not None:
        obs_dim, act_dim = env_dims(a.env)
        if (agent.config.obs_dim, agent.config.act_dim) != (obs_dim, act_dim):
            raise UsageError(
                f"the agent acts in ({agent.config.obs_dim}, {agent.config.act_dim}) dimensions but "
                f"{a.env} has ({obs_dim}, {act_dim}); pass the --env the agent was trained in "
                f"({agent.env_id})"
            )
    summary = {}
    if real is not None:
        summary["data"] = _data_summary(real)
    if agent is not None:
        summary["policy"] = evaluate_policy(agent, a.env, a.episodes, seed=a.seed)
    if syn is not None:
        err = dynamics_error(syn, syn.env_id, max_transitions=a.max_transitions, seed=a.seed)
        ok = np.isfinite(err)
        summary["synthetic"] = {
            **_data_summary(syn),
            "transitions_checked": len(err),
            "transitions_identifiable": int(ok.sum()),
            "dynamics_mse_mean": float(np.mean(err[ok])) if ok.any() else None,
            "dynamics_mse_median": float(np.median(err[ok])) if ok.any() else None,
            "identifiable_fraction": float(np.mean(ok)),
        }
        if agent is not None:
            summary["synthetic"]["policy_log_likelihood"] = policy_log_likelihood(agent, syn)
        if real is not None:
            summary["plot"] = str(
                plot_state_trajectories(
                    episode_windows(real), {"synthetic": episode_windows(syn)}, a.out / "states.png"
                )
            )
    return summary


def cmd_demo(a) -> dict:
    return run_demo(a.out, quick=not a.full, seed=a.seed, device=a.device, progress=not a.quiet)


# ------------------------------------------------------------------------------------------------ parser


def _finish(parser: argparse.ArgumentParser) -> None:
    """Usage errors (a wrong type, an out-of-range value, a missing argument) as one line with exit code 2,
    and every default shown in ``--help``, zeros included."""

    def error(message: str):
        parser.exit(2, f"{parser.prog}: error: {message}; see {parser.prog} --help\n")

    parser.error = error
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _finish(sub)
        elif (
            action.option_strings
            and action.help
            and "%(default)" not in action.help
            and action.default is not None
            and action.default is not False
            and action.default is not argparse.SUPPRESS
        ):
            action.help += " (default: %(default)s)"


def _synthesis_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--coeff", type=nonnegative_float, default=1.0, help="policy guidance strength (0: unguided)"
    )
    add_sampling_flags(
        p,
        num_samples=64,
        steps=32,
        solver="heun",
        samples_help="windows (synthetic trajectories) per synthetic set",
    )
    p.add_argument(
        "--length",
        type=positive_int,
        default=None,
        help="rows per window (at least 2; default: the model's training window)",
    )
    p.add_argument(
        "--no-grad-norm", action="store_true", help="do not normalise the guidance gradient per window"
    )


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, __doc__.splitlines()[0].split(": ", 1)[1], distribution="steerdiff-policy")
    add = subcommands(p)

    s = add("collect", "roll out a behaviour policy and write a D4RL HDF5 dataset (<out>/data.hdf5)")
    s.add_argument("--env", default="Pendulum-v1", choices=SUPPORTED, help="gymnasium environment")
    s.add_argument(
        "--behaviour",
        default="replay",
        choices=BEHAVIOURS,
        help="random actions, a noisy scripted controller, or replay: noise decaying over episodes",
    )
    s.add_argument("--transitions", type=positive_int, default=20000, help="transitions to collect")
    s.add_argument(
        "--noise",
        type=nonnegative_float,
        default=0.1,
        help="action noise of the scripted controller, as a fraction of the action bound",
    )
    s.add_argument(
        "--max-episode-steps",
        type=positive_int,
        default=None,
        help="cut episodes at this length (default: the environment's limit)",
    )
    s.add_argument("--minari-id", default=None, help="also write a local Minari dataset with this id")
    add_runtime_flags(s, out="runs/policy/collect")

    s = add("train", "train the trajectory diffusion model on a dataset (bundle in <out>/model)")
    s.add_argument("--data", required=True, help="D4RL .hdf5 file or minari:<dataset_id>")
    s.add_argument("--env", default=None, choices=SUPPORTED, help="environment (default: the dataset's)")
    s.add_argument("--horizon", type=positive_int, default=32, help="window length (rows) to train on")
    s.add_argument(
        "--padding",
        default="mask",
        choices=PADDINGS,
        help="mask: windows also run past episode starts and ends (padding rows marked invalid), so every "
        "episode is used and terminals keep their rate; none: windows inside episodes only",
    )
    s.add_argument(
        "--min-coverage",
        type=probability,
        default=0.5,
        help="with --padding none: the least fraction of the transitions the training windows must hold",
    )
    s.add_argument(
        "--stride", type=positive_int, default=8, help="rows between the starts of training windows"
    )
    s.add_argument("--base-channels", type=positive_int, default=32, help="width of the temporal U-Net")
    s.add_argument("--train-steps", type=positive_int, default=2000, help="training updates")
    s.add_argument("--batch-size", type=positive_int, default=64, help="windows per update")
    s.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate")
    add_runtime_flags(s, out="runs/policy/train")

    s = add("synthesize", "sample synthetic transitions (<out>/synthetic.hdf5), policy-guided with --agent")
    s.add_argument("--model", required=True, type=existing_dir, help="trajectory model folder (from train)")
    s.add_argument(
        "--agent",
        default=None,
        type=existing_dir,
        help="target policy folder (from train-agent); without it the samples are unguided",
    )
    _synthesis_flags(s)
    s.add_argument(
        "--chunk-size",
        type=positive_int,
        default=None,
        help="synthesize in resumable chunks of this many windows, kept in <out>/shards and shared out over "
        "the processes of a torchrun launch (the result does not depend on their number); default: one "
        "batch, or chunks of 64 under torchrun",
    )
    add_runtime_flags(s, out="runs/policy/synthesize")

    s = add("train-agent", "train TD3+BC or IQL on real, synthetic or mixed batches (bundle in <out>/agent)")
    s.add_argument("--data", required=True, help="D4RL .hdf5 file or minari:<dataset_id>")
    s.add_argument("--env", default=None, choices=SUPPORTED, help="environment (default: the dataset's)")
    s.add_argument("--agent", default="td3bc", choices=sorted(AGENTS), help="offline RL algorithm")
    s.add_argument("--train-steps", type=positive_int, default=10000, help="agent updates in all")
    s.add_argument("--batch-size", type=positive_int, default=256, help="transitions per update")
    s.add_argument("--hidden", type=positive_int, default=256, help="hidden units of each network layer")
    s.add_argument(
        "--alpha", type=positive_float, default=None, help="TD3+BC: weight of the Q term (default 2.5)"
    )
    s.add_argument(
        "--expectile",
        type=probability,
        default=None,
        help="IQL: expectile of the value, in (0, 1) (default 0.7)",
    )
    s.add_argument(
        "--beta",
        type=nonnegative_float,
        default=None,
        help="IQL: inverse temperature of the advantage weights (default 3, for D4RL-normalised "
        "rewards; with raw rewards choose it on validation episodes, e.g. 0.1 on Pendulum)",
    )
    s.add_argument(
        "--model",
        default=None,
        type=existing_dir,
        help="trajectory model folder (from train) for synthetic data",
    )
    s.add_argument("--synth-ratio", type=probability, default=0.0, help="synthetic share of each batch")
    s.add_argument(
        "--regenerate-every",
        type=positive_int,
        default=2000,
        help="draw a new synthetic set from the current policy every this many updates",
    )
    s.add_argument(
        "--eval-every", type=positive_int, default=1000, help="evaluate in the simulator every N updates"
    )
    s.add_argument("--eval-episodes", type=positive_int, default=5, help="episodes per evaluation")
    s.add_argument(
        "--save-every",
        type=positive_int,
        default=1000,
        help="save the agent bundle every N updates (and at the end)",
    )
    s.add_argument(
        "--resume", action="store_true", help="continue the agent saved in <out>/agent from its update step"
    )
    _synthesis_flags(s)
    add_runtime_flags(s, out="runs/policy/train-agent")

    s = add("evaluate", "returns in the simulator; dynamics error and likelihood of synthetic data")
    s.add_argument("--agent", default=None, type=existing_dir, help="agent folder (from train-agent)")
    s.add_argument(
        "--env",
        default=None,
        choices=SUPPORTED,
        help="environment (needed with --agent; default for datasets: the dataset's)",
    )
    s.add_argument("--episodes", type=positive_int, default=10, help="evaluation episodes of the agent")
    s.add_argument(
        "--synthetic", default=None, help="synthetic dataset (.hdf5) to check against the simulator"
    )
    s.add_argument(
        "--data",
        default=None,
        help="real dataset (.hdf5 or minari:<id>): its counts (transitions, episodes, terminal fraction), "
        "and real against synthetic states in a plot",
    )
    s.add_argument(
        "--max-transitions",
        type=positive_int,
        default=5000,
        help="synthetic transitions checked in the simulator (a random subset beyond this; the summary "
        "says how many were checked)",
    )
    add_runtime_flags(s, out="runs/policy/evaluate")

    s = add("demo", "Pendulum end to end on a small setting (a few minutes on a CPU)")
    s.add_argument("--full", action="store_true", help="the larger setting")
    add_runtime_flags(s, out="runs/policy/demo")
    add_command_presets(p, PRESETS)  # --preset paper / gpu-check / smoke (presets.py)
    _finish(p)
    return p


HANDLERS = {
    "collect": cmd_collect,
    "train": cmd_train,
    "synthesize": cmd_synthesize,
    "train-agent": cmd_train_agent,
    "evaluate": cmd_evaluate,
    "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), HANDLERS, argv)


if __name__ == "__main__":
    sys.exit(main())
