"""Policy-guided diffusion on locally collected datasets: does guided synthetic data help offline agents,
and is its dynamics error below an autoregressive world model's at comparable policy likelihood?

For each task (Pendulum-v1 and Hopper-v5 with a "medium-replay"-like dataset, Pendulum-v1/random with
uniformly random actions; a task is ENV or ENV/BEHAVIOUR, BEHAVIOUR one of steerdiff.policy.collect's,
default replay): collect the dataset, train the trajectory diffusion model and an ensemble world model, then

1. train TD3+BC and IQL on real only / real + unguided synthetic / real + policy-guided synthetic (a set share
   of each batch synthetic, regenerated from the current policy every K updates) and report the final return in
   the simulator (D4RL-normalised where reference scores exist), mean +- std over seeds, with wall time;
2. for the guided TD3+BC agent as target policy, report the target-policy log-likelihood and the dynamics
   error (simulator reset to each generated state, every transition) of unguided and guided synthetic data
   across guidance coefficients, with the reference sampler (Heun 256, S_churn 80) and the reference's way
   of guiding (the noisy sample), next to rollouts of the same policy and length in world models: the
   MOPO/PETS-style Gaussian ensemble (sampled, and its member means) and an MSE-trained ensemble; again
   at a longer length, where autoregressive errors compound.

    python benchmarks/policy_pgd.py --quick          # small: under a minute once its models are cached
    python benchmarks/policy_pgd.py --json out.json  # full: 20k transitions; Hopper: base 64, 10k updates

The datasets (D4RL HDF5) and trajectory diffusion models are cached under --cache (default
~/.cache/steerdiff/policy_pgd), keyed by a hash of their config; a killed training run resumes from its
last checkpoint (the core trainer resumes exactly), and reruns load the finished model. The diffusion
model needs thousands of updates: its dynamics error falls from ~2.5 (150 updates) to ~0.013 (3000) on
Pendulum, so the quick setting (a few hundred updates) only checks that the pipeline runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from steerdiff.core.benchmarking import environment, print_table, write_json
from steerdiff.policy.agents import AGENTS, make_agent
from steerdiff.policy.collect import BEHAVIOURS, collect
from steerdiff.policy.data import load_d4rl, save_d4rl
from steerdiff.policy.diffusion import ModelConfig, SamplerConfig, TrajectoryDiffusion
from steerdiff.policy.envs import action_bounds, normalized_score
from steerdiff.policy.evaluation import dynamics_error, evaluate_policy, policy_log_likelihood
from steerdiff.policy.synthesis import Synthesizer
from steerdiff.policy.training import train_agent
from steerdiff.policy.world_model import WorldModel, WorldModelConfig

# agent training: `agent_steps` updates of batch 128, `synth_ratio` of each batch synthetic (the reference:
# 240 of 256; half here, chosen on Pendulum's validation episodes with benchmarks/policy_curve.py, where
# 240/256 let guided TD3+BC collapse late), a new synthetic set of `synth_num` windows every `regen` updates;
# cfg["agents"][task] overrides these per task (full Pendulum: the update count where real-only
# TD3+BC's validation return flattens, also from benchmarks/policy_curve.py); cfg["agents"][task][agent]
# overrides them, and the agent's own hyper-parameters (steerdiff.policy.agents.AgentConfig), for one agent
# (IQL's beta of {0.1, 0.3, 1, 3} on validation episodes: Pendulum 0.1, Hopper 0.3, the best mean return
# over the last half of the curve; with raw rewards (Pendulum's reach -16 per step) the advantage spread
# grows to ~7 and beta = 3, tuned for D4RL-normalised rewards, degrades after 1000-2000 updates on both; full
# Hopper: 5000 updates, where real-only TD3+BC's validation return flattens). Keys are tasks (below).
QUICK = dict(data=2000, model_steps=150, wm_steps=200, agent_steps=100, regen=50, synth_ratio=0.5, seeds=2,
             episodes=2, ep_steps=200, num=32, sampler_steps=12, hidden=64, coeffs=(0.3, 1.0, 3.0), long=32,
             ref_steps=32, ref_coeffs=(1.0,), models={}, agents={})
FULL = dict(data=20000, model_steps=3000, wm_steps=2000, agent_steps=2000, regen=500, synth_ratio=0.5, seeds=3,
            episodes=5, ep_steps=500, num=128, sampler_steps=32, hidden=128, coeffs=(0.1, 0.3, 1.0, 3.0),
            long=64, ref_steps=256, ref_coeffs=(0.3, 1.0),
            agents={"Pendulum-v1": dict(agent_steps=7000, regen=1000, iql={"beta": 0.1}),
                    "Pendulum-v1/random": {"agent_steps": 7000, "regen": 1000, "iql": {"beta": 0.3},
                                           "td3bc": {"alpha": 160.0}},
                    "Hopper-v5": dict(agent_steps=5000, iql={"beta": 0.3})},
            models={"Pendulum-v1": dict(base_channels=64, emb_dim=128, steps=8000),
                    "Pendulum-v1/random": {"base_channels": 64, "emb_dim": 128, "steps": 8000},
                    "Hopper-v5": dict(base_channels=64, emb_dim=128, steps=10000)})
# Pendulum-v1/random: the replay dataset leaves no headroom (real-only agents reach the swing-up optimum,
# about -150); on 20k random transitions real-only TD3+BC returns -1094 and IQL -1002 (2 seeds, a pilot run
# before any synthetic one). It takes Pendulum-v1's settings, tuned on the replay data, but the agents' own:
# TD3+BC's alpha of {2.5, 10, 40, 160} and IQL's beta of {0.1, 0.3, 1, 3} with the best real-only validation
# return over updates 4000-7000 (benchmarks/policy_curve.py, 3 seeds; a rule fixed before the sweep):
# alpha 160 (-1124, -978, -597, -395), a weak pull toward the random actions, and beta 0.3
# (-1045, -981, -1019, -1124).
# the trajectory model: windows of 16 rows (the reference trains on 32 with stride 8 and a base-1024 U-Net);
# cfg["models"][task] overrides it per task (the full Hopper model: 4x wider, 10k updates)
MODEL = dict(horizon=16, stride=4, base_channels=16, channel_mults=(1, 2), emb_dim=64)


def split_task(task: str) -> tuple[str, str]:
    """A task, "ENV" or "ENV/BEHAVIOUR", as (environment id, behaviour that collects its dataset); the
    behaviour defaults to "replay", the medium-replay-like mixture."""
    env_id, _, behaviour = task.partition("/")
    behaviour = behaviour or "replay"
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"task {task!r}: unknown behaviour {behaviour!r}; write ENV or ENV/BEHAVIOUR with "
                         f"BEHAVIOUR one of {list(BEHAVIOURS)}")
    return env_id, behaviour


def task_arg(text: str) -> str:
    """argparse type of a task: ``text`` if :func:`split_task` accepts it, else a usage error naming why."""
    try:
        split_task(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def model_settings(task: str, cfg: dict) -> tuple[dict, int]:
    """(architecture, updates) of the trajectory model for ``task`` in setting ``cfg``."""
    over = dict(cfg["models"].get(task, {}))
    steps = over.pop("steps", cfg["model_steps"])
    return {**MODEL, **over}, steps


TRAINING = ("agent_steps", "regen", "synth_ratio", "synth_num")  # the training loop's agent settings


def agent_settings(task: str, cfg: dict, agent_name: str | None = None) -> dict:
    """Agent updates, regeneration interval, synthetic share and windows per synthetic set for ``task``, and
    for ``agent_name`` if given (its own entry in cfg["agents"][task] goes over the task's)."""
    base = {k: cfg[k] for k in TRAINING[:3]} | {"synth_num": cfg["num"]}
    env = cfg["agents"].get(task, {})
    over = {k: v for k, v in env.items() if k not in AGENTS}
    unknown = set(over) - set(TRAINING)
    if unknown:
        raise KeyError(f"unknown agent settings {sorted(unknown)} for {task}; use {sorted(TRAINING)}")
    own = env.get(agent_name, {}) if agent_name else {}
    return base | over | {k: v for k, v in own.items() if k in TRAINING}


def agent_hparams(task: str, agent_name: str, cfg: dict) -> dict:
    """AgentConfig overrides of ``agent_name`` on ``task``: the setting's width and the agent's own entry in
    cfg["agents"][task], less the training settings (:data:`TRAINING`)."""
    own = cfg["agents"].get(task, {}).get(agent_name, {})
    return {"hidden": cfg["hidden"]} | {k: v for k, v in own.items() if k not in TRAINING}


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "steerdiff" / "policy_pgd"


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def dataset(task: str, cfg: dict, seed: int, cache: Path | None):
    """The dataset collected for ``task`` and its cache folder (None without a cache)."""
    env_id, behaviour = split_task(task)
    data_args = dict(env_id=env_id, behaviour=behaviour, num_steps=cfg["data"], noise=0.1, seed=seed,
                     max_episode_steps=cfg["ep_steps"])
    if cache is None:
        return collect(**data_args), None
    root = cache / f"{env_id}-{_key(data_args)}"
    data_path = root / "data.hdf5"
    if data_path.exists():
        return load_d4rl(data_path, env_id), root
    real = collect(**data_args)
    save_d4rl(real, data_path)
    return real, root


def dataset_and_model(task: str, cfg: dict, seed: int, cache: Path | None, progress: bool = False):
    """The collected dataset and the trained trajectory model, from ``cache`` when present (trained and
    stored there otherwise; an interrupted training run resumes from its last checkpoint)."""
    arch, steps = model_settings(task, cfg)
    model_cfg = ModelConfig(**arch, steps=steps, seed=seed)
    real, root = dataset(task, cfg, seed, cache)
    if root is None:
        return real, TrajectoryDiffusion.fit(real, model_cfg, progress=progress, device="cpu"), False
    model_dir = root / f"model-{_key(arch, steps, seed)}"
    cached = (model_dir / "trajectory.json").exists()
    model = TrajectoryDiffusion.load(model_dir, device="cpu") if cached else \
        TrajectoryDiffusion.fit(real, model_cfg, out_dir=model_dir, progress=progress, device="cpu")
    return real, model, cached


def run_task(task: str, cfg: dict, seed: int, cache: Path | None, agent_names=("td3bc", "iql"),
             agent_seeds: range | None = None) -> tuple[list, list, dict]:
    """Return rows, dynamics rows and info of ``task``. Agents train with seeds ``seed + s`` for s in
    ``agent_seeds`` (default range(cfg["seeds"])) and are evaluated on episodes 10 000 + s; the dataset and
    models keep ``seed``, so more agent seeds extend a run. The target policy of the dynamics table is the
    guided agent of the first of ``agent_names`` (TD3+BC by default) at the first seed."""
    agent_seeds = agent_seeds or range(cfg["seeds"])
    env_id, _ = split_task(task)
    t0 = time.perf_counter()
    real, model, cached = dataset_and_model(task, cfg, seed, cache)
    bound = action_bounds(env_id)
    t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    wms = {kind: WorldModel.fit(real, bound, WorldModelConfig(steps=cfg["wm_steps"], hidden=128, seed=seed,
                                                              probabilistic=kind == "nll"))
           for kind in ("nll", "mse")}
    t_wm = (time.perf_counter() - t0) / len(wms)
    sampler = SamplerConfig(steps=cfg["sampler_steps"])
    rows, agents, per_seed = [], {}, {}
    for agent_name in agent_names:
        ag = agent_settings(task, cfg, agent_name)
        share = ag["synth_ratio"]
        for source, ratio, coeff in (("real only", 0.0, 0.0), ("unguided synthetic", share, 0.0),
                                     ("policy-guided synthetic", share, 1.0)):
            finals, norms, t0 = [], [], time.perf_counter()
            for s in agent_seeds:
                torch.manual_seed(seed + s)
                agent = make_agent(agent_name, real.obs_dim, real.act_dim, bound, real.observations.mean(0),
                                   real.observations.std(0), **agent_hparams(task, agent_name, cfg))
                synth = Synthesizer(model, num=ag["synth_num"], coeff=coeff, sampler=sampler, seed=seed + s)
                train_agent(agent, real, ag["agent_steps"], 128, synth, ratio, ag["regen"], seed + s)
                ev = evaluate_policy(agent, env_id, cfg["episodes"], seed=10_000 + s,
                                     max_episode_steps=cfg["ep_steps"])
                finals.append(ev["return_mean"])
                norms.append(ev["normalized_mean"])
                if s == agent_seeds[0]:
                    agents[(agent_name, source)] = agent
            per_seed[f"{agent_name}, {source}"] = dict(zip(map(int, agent_seeds), finals))
            norm = None if norms[0] is None else (float(np.mean(norms)), float(np.std(norms)))
            rows.append([task, agent_name, source, ag["agent_steps"], f"{ratio:.2f}",
                         float(np.mean(finals)), float(np.std(finals)),
                         None if norm is None else norm[0], None if norm is None else norm[1],
                         (time.perf_counter() - t0) / len(agent_seeds)])

    target = agents[(agent_names[0], "policy-guided synthetic")]
    dyn_rows = []

    def dyn_row(label: str, make, rows: int):
        t0 = time.perf_counter()
        ds = make()
        dt = time.perf_counter() - t0
        err = dynamics_error(ds, env_id, seed=seed)  # every transition
        dyn_rows.append([task, label, rows, policy_log_likelihood(target, ds), float(np.nanmean(err)),
                         float(np.nanmedian(err)), len(ds), dt])

    def diffusion(coeff: float, length: int, smp: SamplerConfig = sampler, **kw):
        return lambda: Synthesizer(model, num=cfg["num"], length=length, coeff=coeff, sampler=smp,
                                   seed=seed + 7, **kw)(target)

    def world_model(kind: str, sample: bool, length: int):
        starts = real.observations[np.random.default_rng(seed).choice(len(real), cfg["num"])]
        gen = torch.Generator().manual_seed(seed)
        return lambda: wms[kind].rollout(target, starts, length - 1, gen, env_id, sample=sample)

    wm_kinds = [("MOPO-style: Gaussian ensemble, sampled", "nll", True),
                ("Gaussian ensemble, member mean", "nll", False),
                ("MSE ensemble, member mean (old baseline)", "mse", False)]
    short = model.horizon
    dyn_row("diffusion, unguided", diffusion(0.0, short), short)
    for c in cfg["coeffs"]:
        dyn_row(f"diffusion, guided λ={c:g}", diffusion(c, short), short)
    ref = SamplerConfig(steps=cfg["ref_steps"], churn=min(80 / cfg["ref_steps"], 2**0.5 - 1))
    dyn_row(f"diffusion, guided λ=1, Heun {ref.steps} + S_churn 80", diffusion(1.0, short, ref), short)
    for c in cfg["ref_coeffs"]:
        dyn_row(f"diffusion, guided λ={c:g}, reference-style",
                diffusion(c, short, apply="sample", at="noisy"), short)
    for label, kind, smp in wm_kinds:
        dyn_row(f"world model, {label}", world_model(kind, smp, short), short)
    dyn_row("diffusion, guided λ=1", diffusion(1.0, cfg["long"]), cfg["long"])
    for label, kind, smp in wm_kinds[::2]:
        dyn_row(f"world model, {label}", world_model(kind, smp, cfg["long"]), cfg["long"])
    dyn_rows.append([task, "real data", "-", policy_log_likelihood(target, real), 0.0, 0.0, len(real), 0.0])
    copy = ((real.next_observations - real.observations).astype(np.float64) ** 2).mean(1)
    dyn_rows.append([task, "scale: real data with s' := s", "-", None, float(copy.mean()),
                     float(np.median(copy)), len(real), 0.0])
    rets = real.episode_returns()
    norm = normalized_score(env_id, rets)
    rows.append([task, "-", "behaviour data (its episodes)", "-", "-", float(rets.mean()), float(rets.std()),
                 None if norm is None else float(norm.mean()), None if norm is None else float(norm.std()), 0.0])
    arch, steps = model_settings(task, cfg)
    info = {"env": task, "transitions": len(real), "model_width": arch["base_channels"],
            "model_steps": steps, "model_cached": cached, "model_seconds": t_model,
            "world_model_seconds": t_wm, "agents": ag, "rows": arch["horizon"], "returns_per_seed": per_seed}
    return rows, dyn_rows, info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--envs", nargs="+", default=None, metavar="TASK", type=task_arg,
                   help="tasks: ENV (the replay dataset) or ENV/BEHAVIOUR, BEHAVIOUR one of "
                   f"{list(BEHAVIOURS)} (default: Pendulum-v1, Pendulum-v1/random, Hopper-v5; --quick leaves "
                   "out Pendulum-v1 to stay under a minute)")
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default=str(default_cache()),
                   help="folder for datasets and trained models (default %(default)s)")
    p.add_argument("--no-cache", action="store_true", help="collect and train from scratch, store nothing")
    p.add_argument("--agents", nargs="+", default=["td3bc", "iql"], choices=["td3bc", "iql"],
                   help="offline agents to train; the first one's guided agent is the dynamics table's "
                   "target policy (default %(default)s)")
    p.add_argument("--agent-seeds", nargs=2, type=int, default=None, metavar=("START", "STOP"),
                   help="agent seeds range(START, STOP) (default: the setting's 0..seeds-1); the data and "
                   "models stay those of --seed, so a run with new seeds extends an earlier one")
    a = p.parse_args(argv)
    a.agents = list(dict.fromkeys(a.agents))  # each agent once, in the order given
    if a.envs is None:
        a.envs = ["Pendulum-v1/random", "Hopper-v5"] if a.quick else ["Pendulum-v1", "Pendulum-v1/random",
                                                                      "Hopper-v5"]
    cfg = QUICK if a.quick else FULL
    seeds = range(*a.agent_seeds) if a.agent_seeds else range(cfg["seeds"])
    if len(seeds) < 1:
        p.error(f"--agent-seeds {a.agent_seeds[0]} {a.agent_seeds[1]} is empty; STOP must exceed START")
    torch.set_num_threads(a.threads)
    t_all = time.perf_counter()
    rows, dyn, infos = [], [], {}
    for task in a.envs:
        r, d, info = run_task(task, cfg, a.seed, None if a.no_cache else Path(a.cache), a.agents, seeds)
        rows += r
        dyn += d
        infos[task] = info
    print_table("Trajectory diffusion models and world models",
                ["task", "transitions", "U-Net base", "diffusion updates", "cached", "data + model s",
                 "world model s"],
                [[i["env"], i["transitions"], i["model_width"], i["model_steps"], i["model_cached"],
                  i["model_seconds"], i["world_model_seconds"]] for i in infos.values()])
    print_table("Final return of offline agents (mean ± std over seeds)",
                ["task", "agent", "training data", "updates", "synth share", "return", "± std", "normalized",
                 "± std", "s / seed"], rows,
                notes=["batch 128; synth share: fraction of each batch drawn from the synthetic set, which is "
                       "made unguided first, then from the current policy every K updates (" +
                       ", ".join(f"{e}: K = {i['agents']['regen']}, {i['agents']['synth_num']} windows of "
                                 f"{i['rows']} rows" for e, i in infos.items()) + ").",
                       (f"agent seeds {seeds.start}..{seeds.stop - 1}, {cfg['episodes']} evaluation episodes "
                        f"of <= {cfg['ep_steps']} steps."),
                       "normalized: D4RL reference returns (none exist for Pendulum)."])
    print_table(f"Dynamics error vs target-policy likelihood (target: guided {a.agents[0]}, seed {seeds[0]})",
                ["task", "data", "rows", "log π(a|s)", "dyn MSE mean", "dyn MSE median", "transitions",
                 "gen s"], dyn, notes=[
                    ("dyn MSE: on every generated transition, the simulator is reset to the generated state, "
                     "steps the generated action, and the squared error to the generated next state is "
                     "averaged over observation dims."),
                    (f"rows: window length; a world-model rollout of the same policy has rows - 1 steps from "
                     f"{cfg['num']} real start states, the diffusion model samples {cfg['num']} windows."),
                    ("world models: 5 members, each its own bootstrap batches; per step and row a random "
                     "member. MOPO-style samples that member's Gaussian; 'member mean' takes its mean."),
                    (f"diffusion: Heun {cfg['sampler_steps']} steps without churn unless named (the "
                     "reference samples with Heun 256 steps, S_churn 80). Guidance moves x0-hat by λ_k g, "
                     "g the normalised gradient at x0-hat; reference-style moves the noisy sample by λ_k g, "
                     "g taken there, once per step (the reference code's default).")])
    total = time.perf_counter() - t_all
    print(f"\nwall time {total:.1f} s ({'quick' if a.quick else 'full'})")
    if a.json:
        write_json(a.json, {"config": cfg, "returns": rows, "dynamics": dyn, "info": infos, "seconds": total,
                            "environment": environment()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
