"""Return curve of an offline agent trained on real data only: where does it stop improving?

Picks how many updates the agents of benchmarks/policy_pgd.py need. The agent (TD3+BC or IQL, the same
size and batch as in policy_pgd.py) trains on the benchmark's cached "replay" dataset and is evaluated in
the simulator every ``--every`` updates on episodes that are NOT the ones the final evaluation of
policy_pgd.py uses (seeds 20 000+ here, 10 000+ there), so the update count is chosen on a validation
set of episodes.

    python benchmarks/policy_curve.py --quick
    python benchmarks/policy_curve.py --env Pendulum-v1 --agent td3bc --steps 12000 --every 1000 --seeds 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import environment, print_table, write_json
from policy_pgd import FULL, QUICK, dataset, default_cache
from steerdiff.policy.agents import make_agent
from steerdiff.policy.envs import action_bounds
from steerdiff.policy.evaluation import evaluate_policy
from steerdiff.policy.training import train_agent


def curve(env_id: str, agent_name: str, cfg: dict, steps: int, every: int, seeds: int, episodes: int,
          seed: int, cache: Path | None) -> tuple[np.ndarray, np.ndarray, float]:
    """(updates, returns of shape (seeds, evaluations), seconds per seed)."""
    real, _ = dataset(env_id, cfg, seed, cache)
    bound = action_bounds(env_id)
    returns, t0 = [], time.perf_counter()
    for s in range(seeds):
        torch.manual_seed(seed + s)
        agent = make_agent(agent_name, real.obs_dim, real.act_dim, bound, real.observations.mean(0),
                           real.observations.std(0), hidden=cfg["hidden"])

        def score(step, policy, s=s):
            ev = evaluate_policy(policy, env_id, episodes, seed=20_000 + 100 * s,
                                 max_episode_steps=cfg["ep_steps"])
            return {"return": ev["return_mean"]}

        hist = train_agent(agent, real, steps, 128, seed=seed + s, callback=score, eval_every=every)
        returns.append([e["return"] for e in hist["evals"]])
    updates = np.array([e["step"] for e in hist["evals"]])
    return updates, np.array(returns), (time.perf_counter() - t0) / seeds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--agent", default="td3bc", choices=["td3bc", "iql"])
    p.add_argument("--steps", type=int, default=None, help="updates (default: 400 quick, 12000 full)")
    p.add_argument("--every", type=int, default=None, help="evaluate every this many updates")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default=str(default_cache()))
    p.add_argument("--no-cache", action="store_true")
    a = p.parse_args(argv)
    if a.seeds < 1 or a.episodes < 1:
        p.error("--seeds and --episodes must be >= 1")
    torch.set_num_threads(a.threads)
    cfg = QUICK if a.quick else FULL
    steps = a.steps or (400 if a.quick else 12000)
    every = a.every or max(1, steps // 10)
    if every > steps:
        p.error(f"--every ({every}) exceeds --steps ({steps}); pick --every <= --steps")
    t0 = time.perf_counter()
    updates, rets, per_seed = curve(a.env, a.agent, cfg, steps, every, a.seeds, a.episodes, a.seed,
                                    None if a.no_cache else Path(a.cache))
    rows = [[a.env, a.agent, int(u), float(r.mean()), float(r.std())] for u, r in zip(updates, rets.T)]
    print_table("Return of a real-only agent against updates (validation episodes)",
                ["env", "agent", "updates", "return", "± std over seeds"], rows,
                notes=[(f"{a.seeds} seeds, {a.episodes} episodes of <= {cfg['ep_steps']} steps per evaluation, "
                        f"batch 128, hidden {cfg['hidden']}; {per_seed:.0f} s per seed.")])
    total = time.perf_counter() - t0
    print(f"\nwall time {total:.1f} s ({'quick' if a.quick else 'full'})")
    if a.json:
        write_json(a.json, {"env": a.env, "agent": a.agent, "updates": updates.tolist(),
                            "returns": rets.tolist(), "seconds": total, "environment": environment()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
