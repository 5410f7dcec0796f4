"""steerdiff's offline agents beside d3rlpy's: TD3+BC and IQL on the same dataset, settings and update count.

For each task (the datasets of benchmarks/policy_pgd.py, collected locally from gymnasium: Pendulum-v1 and
Hopper-v5 with a "medium-replay"-like behaviour, Pendulum-v1/random with uniform actions), train steerdiff's
TD3+BC and IQL and d3rlpy's TD3+BC and IQL on the real data with the benchmark's hyper-parameters
(steerdiff.policy.benchmark: width, IQL's beta, TD3+BC's alpha, the number of updates, batch 128) and the
same seeds, then evaluate each agent in the simulator on the same episodes. Columns: return (and the
D4RL-normalised score for Hopper), mean over all evaluation episodes with the standard error across seeds,
the training loop's updates per second (batch sampling + update, each library's own loop), episodes.

    python benchmarks/policy_peers.py --quick            # Pendulum-v1/random and Hopper-v5, 300 updates, 2 seeds
    python benchmarks/policy_peers.py --json out.json    # the full setting: 3 tasks, 5000-7000 updates, 3 seeds

d3rlpy is needed only by this benchmark and pins gymnasium 1.0.0, so it goes in a virtual environment of
its own: `pip install torch==2.13.0` first (a CPU build), then
`pip install "d3rlpy==2.8.*" -e packages/core -e "packages/policy[peers]"`. Without d3rlpy the script says so
and prints steerdiff's rows alone. Datasets are shared with policy_pgd.py through --cache.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from steerdiff.core import set_threads
from steerdiff.core.benchmarking import environment, print_table, write_json
from steerdiff.policy import (
    BEHAVIOURS,
    AgentConfig,
    action_bounds,
    evaluate_policy,
    make_agent,
    train_agent,
)
from steerdiff.policy.benchmark import (
    FULL,
    QUICK,
    agent_hparams,
    agent_settings,
    dataset,
    default_cache,
    split_task,
    task_arg,
)

BATCH = 128  # the batch of steerdiff.policy.benchmark's agents
QUICK_UPDATES = 300

# what differs between the two libraries at equal settings (the rest: same widths, depth, ReLU, Adam, learning
# rates, gamma, tau, twin critics with a min target, TD3+BC's alpha, target noise and delayed actor, IQL's
# expectile, beta and weight clip, observations z-scored with the dataset's statistics, actions scaled to
# [-1, 1], raw rewards)
DIFFERENCES = [
    "IQL: steerdiff updates V, then Q (on the new V), then the policy, with three Adam optimizers; d3rlpy "
    "updates V and Q together from one summed loss with one Adam optimizer over both, then the policy.",
    "IQL policy log-std: steerdiff clamps a free parameter to [-5, 2]; d3rlpy maps it through a sigmoid "
    "into [-5, 2] (both state-independent).",
    "IQL policy likelihood: steerdiff clips the data's unit actions to +-0.999; d3rlpy does not.",
    "observation scaling: steerdiff divides by max(std, 1e-3), d3rlpy by std + 1e-3 (same mean and std).",
    "episode ends: d3rlpy rebuilds next observations from the following row and drops the last transition "
    "of each time-limited episode; steerdiff uses the dataset's next_observations row by row.",
    "batches: steerdiff samples indices with a seeded torch.Generator, d3rlpy with numpy's global generator "
    "(seeded by d3rlpy.seed); the same seed therefore gives different batches.",
]


def load_d3rlpy():
    """d3rlpy, imported quietly (it imports the old gym, which prints a deprecation banner), or None."""
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            import d3rlpy
    except ImportError:
        return None
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return d3rlpy


def d3rlpy_dataset(d3rlpy, real):
    """The same transitions as a d3rlpy replay buffer (episodes end at terminals or timeouts)."""
    timeouts = real.timeouts.astype(np.float32).copy()
    if not (real.terminals[-1] or timeouts[-1]):
        timeouts[-1] = 1.0  # the collection's last, cut episode
    return d3rlpy.dataset.MDPDataset(
        observations=real.observations,
        actions=real.actions,
        rewards=real.rewards.reshape(-1, 1),
        terminals=real.terminals.astype(np.float32),
        timeouts=timeouts,
    )


def d3rlpy_agent(d3rlpy, name: str, config: AgentConfig, obs_mean, obs_std, batch_size: int):
    """d3rlpy's TD3+BC or IQL with steerdiff's :class:`AgentConfig` settings (see DIFFERENCES)."""
    c = config
    enc = d3rlpy.models.VectorEncoderFactory(hidden_units=[c.hidden] * c.layers, activation="relu")
    bound = np.full(c.act_dim, c.action_bound, dtype=np.float32)
    common = dict(
        batch_size=batch_size,
        gamma=c.gamma,
        tau=c.tau,
        actor_learning_rate=c.lr,
        critic_learning_rate=c.lr,
        actor_encoder_factory=enc,
        critic_encoder_factory=enc,
        observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(
            mean=np.asarray(obs_mean, dtype=np.float32), std=np.asarray(obs_std, dtype=np.float32)
        ),
        action_scaler=d3rlpy.preprocessing.MinMaxActionScaler(minimum=-bound, maximum=bound),
    )
    if name == "td3bc":
        cfg = d3rlpy.algos.TD3PlusBCConfig(
            **common,
            alpha=c.alpha,
            target_smoothing_sigma=c.policy_noise,
            target_smoothing_clip=c.noise_clip,
            update_actor_interval=c.policy_freq,
        )
    elif name == "iql":
        cfg = d3rlpy.algos.IQLConfig(
            **common,
            value_encoder_factory=enc,
            expectile=c.expectile,
            weight_temp=c.beta,
            max_weight=c.adv_clip,
        )
    else:
        raise ValueError(f"unknown agent {name!r}; choose td3bc or iql")
    return cfg.create(device=False)


class D3rlpyPolicy:
    """A trained d3rlpy algorithm as the ``act(obs)`` that steerdiff's evaluate_policy calls."""

    def __init__(self, algo):
        self.algo = algo

    def act(self, obs):
        return self.algo.predict(np.asarray(obs, dtype=np.float32))


def d3rlpy_fit(d3rlpy, algo, data, steps: int) -> None:
    """d3rlpy's own training loop, silent and writing nothing."""
    algo.fit(
        data,
        n_steps=steps,
        n_steps_per_epoch=steps,
        show_progress=False,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
        save_interval=steps + 1,
    )


def run(task: str, cfg: dict, seed: int, cache, agents, steps: int | None, d3rlpy) -> tuple[list, dict]:
    env_id, _ = split_task(task)
    real, _ = dataset(task, cfg, seed, cache)
    bound = action_bounds(env_id)
    mean, std = real.observations.mean(0), real.observations.std(0)
    peer_data = None if d3rlpy is None else d3rlpy_dataset(d3rlpy, real)
    rows, info = [], {"transitions": len(real), "returns": {}}
    for name in agents:
        n = steps or agent_settings(task, cfg, name)["agent_steps"]
        hp = agent_hparams(task, name, cfg)
        libraries = ["steerdiff"] + ([] if d3rlpy is None else ["d3rlpy"])
        results = {lib: {"per_seed": [], "norm": [], "seconds": 0.0} for lib in libraries}
        for s in range(cfg["seeds"]):
            for lib in libraries:  # alternate libraries seed by seed: machine load hits both alike
                torch.manual_seed(seed + s)
                agent = make_agent(name, real.obs_dim, real.act_dim, bound, mean, std, **hp)
                t0 = time.perf_counter()
                if lib == "steerdiff":
                    train_agent(agent, real, n, BATCH, seed=seed + s)
                    policy = agent
                else:
                    d3rlpy.seed(seed + s)
                    algo = d3rlpy_agent(d3rlpy, name, agent.config, mean, std, BATCH)
                    d3rlpy_fit(d3rlpy, algo, peer_data, n)
                    policy = D3rlpyPolicy(algo)
                results[lib]["seconds"] += time.perf_counter() - t0
                ev = evaluate_policy(
                    policy, env_id, cfg["episodes"], seed=10_000 + s, max_episode_steps=cfg["ep_steps"]
                )
                results[lib]["per_seed"].append(ev["returns"])
                if ev["normalized_mean"] is not None:
                    results[lib]["norm"].append(ev["normalized_mean"])
        for lib, r in results.items():
            returns = np.array(r["per_seed"])  # (seeds, episodes)
            seed_means = returns.mean(1)
            se = float(seed_means.std(ddof=1) / np.sqrt(len(seed_means))) if len(seed_means) > 1 else None
            norm = np.array(r["norm"])
            norm_se = float(norm.std(ddof=1) / np.sqrt(len(norm))) if len(norm) > 1 else None
            rows.append(
                [
                    task,
                    name,
                    lib,
                    n,
                    float(returns.mean()),
                    se,
                    float(norm.mean()) if len(norm) else None,
                    norm_se if len(norm) else None,
                    n * cfg["seeds"] / r["seconds"],
                    returns.size,
                ]
            )
            info["returns"][f"{name}, {lib}"] = returns.tolist()
    return rows, info


HEADERS = [
    "task",
    "agent",
    "library",
    "updates",
    "return",
    "return se",
    "normalised",
    "normalised se",
    "updates/s",
    "episodes",
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the small setting, under a minute")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--envs",
        nargs="+",
        default=None,
        metavar="TASK",
        type=task_arg,
        help="tasks: ENV or ENV/BEHAVIOUR, BEHAVIOUR one of "
        f"{list(BEHAVIOURS)} (default: Pendulum-v1, Pendulum-v1/random, Hopper-v5; --quick: the last two)",
    )
    p.add_argument("--agents", nargs="+", default=["td3bc", "iql"], choices=["td3bc", "iql"])
    p.add_argument(
        "--updates",
        type=int,
        default=None,
        help=f"updates per agent (default: the benchmark's per task; --quick {QUICK_UPDATES})",
    )
    p.add_argument("--json", default=None, help="write every number, versions and settings here")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--cache", type=Path, default=default_cache(), help="datasets folder (default %(default)s)"
    )
    p.add_argument("--no-cache", action="store_true", help="collect the datasets afresh, store nothing")
    p.add_argument("--without-d3rlpy", action="store_true", help="act as if d3rlpy were missing")
    a = p.parse_args(argv)
    if a.updates is not None and a.updates < 1:
        p.error(f"--updates must be >= 1, got {a.updates}")
    a.agents = list(dict.fromkeys(a.agents))
    if a.envs is None:
        a.envs = (
            ["Pendulum-v1/random", "Hopper-v5"]
            if a.quick
            else ["Pendulum-v1", "Pendulum-v1/random", "Hopper-v5"]
        )
    cfg = QUICK if a.quick else FULL
    steps = a.updates or (QUICK_UPDATES if a.quick else None)
    set_threads(a.threads)
    d3rlpy = None if a.without_d3rlpy else load_d3rlpy()
    import gymnasium

    versions = {
        "gymnasium": gymnasium.__version__,
        "d3rlpy": None if d3rlpy is None else d3rlpy.__version__,
    }
    t_all = time.perf_counter()
    rows, infos = [], {}
    for task in a.envs:
        r, info = run(task, cfg, a.seed, None if a.no_cache else a.cache, a.agents, steps, d3rlpy)
        rows += r
        infos[task] = info
    notes = [
        f"Real data only, batch {BATCH}, width {cfg['hidden']} x 2, {cfg['seeds']} seeds x {cfg['episodes']} "
        f"evaluation episodes of at most {cfg['ep_steps']} steps; return: mean over all episodes, se: the "
        "standard error of the seeds' means; normalised: D4RL reference scores (Hopper only).",
        "updates/s: each library's own training loop (batch sampling + update), one CPU thread, the two "
        "libraries alternating seed by seed.",
        f"versions: torch {torch.__version__}, gymnasium {versions['gymnasium']}, "
        + (f"d3rlpy {versions['d3rlpy']}" if d3rlpy else "d3rlpy not installed: steerdiff's rows alone"),
    ]
    print_table("Offline agents: steerdiff and d3rlpy on the same data", HEADERS, rows, notes)
    if d3rlpy is not None:
        print("\nSettings that differ between the libraries:")
        for d in DIFFERENCES:
            print(f"- {d}")
    seconds = time.perf_counter() - t_all
    print(f"\ntotal {seconds:.0f} s")
    if a.json:
        write_json(
            a.json,
            {
                "argv": sys.argv[1:],
                "environment": environment(threads=a.threads, **versions),
                "setting": "quick" if a.quick else "full",
                "batch_size": BATCH,
                "headers": HEADERS,
                "rows": rows,
                "tasks": infos,
                "differences": DIFFERENCES if d3rlpy else [],
                "seconds": seconds,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
