"""Policy-guided diffusion on locally collected datasets: does guided synthetic data help offline agents,
and is its dynamics error below an autoregressive world model's at comparable policy likelihood?

For each environment (Pendulum-v1, Hopper-v5): collect a "medium-replay"-like dataset, train the trajectory
diffusion model and an ensemble world model, then

1. train TD3+BC and IQL on real only / real + unguided synthetic / real + policy-guided synthetic (half of
   each batch synthetic, regenerated from the current policy every K updates) and report the final return in
   the simulator (D4RL-normalised where reference scores exist), mean +- std over seeds, with wall time;
2. for the guided TD3+BC agent as target policy, report the target-policy log-likelihood and the dynamics
   error (simulator reset to each generated state) of unguided and guided synthetic data across guidance
   coefficients, next to world-model rollouts of the same policy.

    python benchmarks/policy_pgd.py --quick          # small, about a minute on an idle 2-core machine
    python benchmarks/policy_pgd.py --json out.json  # larger
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from _common import environment, print_table, write_json
from steerdiff.policy.agents import make_agent
from steerdiff.policy.collect import collect
from steerdiff.policy.diffusion import ModelConfig, SamplerConfig, TrajectoryDiffusion
from steerdiff.policy.envs import action_bounds
from steerdiff.policy.evaluation import dynamics_error, evaluate_policy, policy_log_likelihood
from steerdiff.policy.synthesis import Synthesizer
from steerdiff.policy.training import train_agent
from steerdiff.policy.world_model import WorldModel, WorldModelConfig

QUICK = dict(data=2000, model_steps=150, wm_steps=200, agent_steps=200, regen=100, seeds=2, episodes=2,
             ep_steps=200, num=32, sampler_steps=12, hidden=64, coeffs=(0.3, 1.0, 3.0))
FULL = dict(data=20000, model_steps=2000, wm_steps=2000, agent_steps=2000, regen=500, seeds=3, episodes=5,
            ep_steps=500, num=128, sampler_steps=32, hidden=128, coeffs=(0.1, 0.3, 1.0, 3.0))


def run_env(env_id: str, cfg: dict, seed: int) -> tuple[list, list, dict]:
    t0 = time.perf_counter()
    real = collect(env_id, "replay", cfg["data"], noise=0.1, seed=seed, max_episode_steps=cfg["ep_steps"])
    bound = action_bounds(env_id)
    model = TrajectoryDiffusion.fit(real, ModelConfig(horizon=16, stride=4, base_channels=16, channel_mults=(1, 2),
                                                      emb_dim=64, steps=cfg["model_steps"], seed=seed),
                                    progress=False, device="cpu")
    t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    wm = WorldModel.fit(real, bound, WorldModelConfig(steps=cfg["wm_steps"], hidden=128, seed=seed))
    t_wm = time.perf_counter() - t0
    sampler = SamplerConfig(steps=cfg["sampler_steps"])
    rows, agents = [], {}
    for agent_name in ("td3bc", "iql"):
        for source, ratio, coeff in (("real only", 0.0, 0.0), ("unguided synthetic", 0.5, 0.0),
                                     ("policy-guided synthetic", 0.5, 1.0)):
            finals, norms, t0 = [], [], time.perf_counter()
            for s in range(cfg["seeds"]):
                torch.manual_seed(seed + s)
                agent = make_agent(agent_name, real.obs_dim, real.act_dim, bound, real.observations.mean(0),
                                   real.observations.std(0), hidden=cfg["hidden"])
                synth = Synthesizer(model, num=cfg["num"], coeff=coeff, sampler=sampler, seed=seed + s)
                train_agent(agent, real, cfg["agent_steps"], 128, synth, ratio, cfg["regen"], seed + s)
                ev = evaluate_policy(agent, env_id, cfg["episodes"], seed=10_000 + s,
                                     max_episode_steps=cfg["ep_steps"])
                finals.append(ev["return_mean"])
                norms.append(ev["normalized_mean"])
                if s == 0:
                    agents[(agent_name, source)] = agent
            norm = None if norms[0] is None else (float(np.mean(norms)), float(np.std(norms)))
            rows.append([env_id, agent_name, source, float(np.mean(finals)), float(np.std(finals)),
                         None if norm is None else norm[0], None if norm is None else norm[1],
                         (time.perf_counter() - t0) / cfg["seeds"]])

    target = agents[("td3bc", "policy-guided synthetic")]
    dyn_rows = []
    gen = torch.Generator().manual_seed(seed)
    for label, coeff in [("diffusion, unguided", 0.0)] + [(f"diffusion, guided λ={c:g}", c) for c in cfg["coeffs"]]:
        t0 = time.perf_counter()
        ds = Synthesizer(model, num=cfg["num"], coeff=coeff, sampler=sampler, seed=seed + 7)(target)
        dt = time.perf_counter() - t0
        err = dynamics_error(ds, env_id, max_transitions=2000, seed=seed)
        dyn_rows.append([env_id, label, policy_log_likelihood(target, ds), float(np.nanmean(err)),
                         float(np.nanmedian(err)), len(ds), dt])
    starts = real.observations[np.random.default_rng(seed).choice(len(real), cfg["num"])]
    t0 = time.perf_counter()
    ds = wm.rollout(target, starts, horizon=15, generator=gen, env_id=env_id)
    dt = time.perf_counter() - t0
    err = dynamics_error(ds, env_id, max_transitions=2000, seed=seed)
    dyn_rows.append([env_id, "world model (5-ensemble, 15 steps)", policy_log_likelihood(target, ds),
                     float(np.nanmean(err)), float(np.nanmedian(err)), len(ds), dt])
    dyn_rows.append([env_id, "real data", policy_log_likelihood(target, real), 0.0, 0.0, len(real), 0.0])
    info = {"model_seconds": t_model, "world_model_seconds": t_wm,
            "data_return_mean": float(real.episode_returns().mean())}
    return rows, dyn_rows, info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--envs", nargs="+", default=["Pendulum-v1", "Hopper-v5"])
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = QUICK if a.quick else FULL
    t_all = time.perf_counter()
    rows, dyn, infos = [], [], {}
    for env_id in a.envs:
        r, d, info = run_env(env_id, cfg, a.seed)
        rows += r
        dyn += d
        infos[env_id] = info
    print_table("Final return of offline agents (mean ± std over seeds)",
                ["env", "agent", "training data", "return", "± std", "normalized", "± std", "s / seed"], rows,
                notes=[f"{cfg['agent_steps']} updates, batch 128 (half synthetic, regenerated every {cfg['regen']}), "
                       f"{cfg['seeds']} seeds, {cfg['episodes']} evaluation episodes of <= {cfg['ep_steps']} steps.",
                       "normalized: D4RL reference returns (none exist for Pendulum)."])
    print_table("Dynamics error vs target-policy likelihood (target: guided TD3+BC, seed 0)",
                ["env", "data", "log π(a|s)", "dyn MSE mean", "dyn MSE median", "transitions", "gen s"], dyn,
                notes=["dyn MSE: simulator reset to each generated state, generated action stepped, squared error "
                       "to the generated next state (mean over observation dims)."])
    total = time.perf_counter() - t_all
    print(f"\nwall time {total:.1f} s ({'quick' if a.quick else 'full'})")
    if a.json:
        write_json(a.json, {"config": cfg, "returns": rows, "dynamics": dyn, "info": infos, "seconds": total,
                            "environment": environment()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
