"""The policy benchmark protocol: does policy-guided synthetic data help offline agents, and is its dynamics
error below an autoregressive world model's at comparable target-policy likelihood?

For each task (an environment, or ENV/BEHAVIOUR for the behaviour that collects its dataset, default
"replay"): collect the dataset, train the trajectory diffusion model and two ensemble world models, then

1. :func:`run_task` trains TD3+BC and IQL on real only / real + unguided synthetic / real + policy-guided
   synthetic data (a set share of each batch synthetic, regenerated from the current policy every K updates),
   reports the final return in the simulator (D4RL-normalised where reference scores exist) over seeds, and,
   for the guided agent of the first algorithm as target policy, the target-policy log-likelihood and the
   dynamics error of unguided and guided synthetic data across guidance coefficients, next to rollouts of
   the same policy and length in world models;
2. :func:`curve` records an agent's return against updates on validation episodes (seeds 20 000+, apart
   from the final evaluation's 10 000+), which is how the settings in :data:`FULL` are chosen.

Datasets (D4RL HDF5) and trajectory models (bundles) are cached under ``cache_dir("policy_pgd")``, keyed by a
hash of their config; a killed training run resumes from its last checkpoint, and reruns load the finished
model. ``benchmarks/policy_pgd.py`` and ``benchmarks/policy_curve.py`` print these as tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from steerdiff.core.runtime import cache_dir

from .agents import AGENTS, AgentConfig, make_agent
from .collect import BEHAVIOURS, collect
from .data import OfflineDataset, load_d4rl, save_d4rl
from .diffusion import ModelConfig
from .envs import action_bounds, normalized_score
from .evaluation import dynamics_error, evaluate_policy, policy_log_likelihood
from .pipeline import PolicyGuidedPipeline
from .synthesis import Synthesizer
from .training import train_agent
from .world_model import WorldModel, WorldModelConfig

__all__ = [
    "COEFF",
    "FULL",
    "MODEL",
    "QUICK",
    "TRAINING",
    "TimedSynthesizer",
    "agent_hparams",
    "agent_settings",
    "curve",
    "dataset",
    "dataset_and_model",
    "default_cache",
    "model_settings",
    "parse_hparams",
    "run_task",
    "split_task",
    "task_arg",
]

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
QUICK = dict(
    data=2000,
    model_steps=150,
    wm_steps=200,
    agent_steps=100,
    regen=50,
    synth_ratio=0.5,
    seeds=2,
    episodes=2,
    ep_steps=200,
    num=32,
    sampler_steps=12,
    hidden=64,
    coeffs=(0.3, 1.0, 3.0),
    long=32,
    ref_steps=32,
    ref_coeffs=(1.0,),
    models={},
    agents={},
)
FULL = dict(
    data=20000,
    model_steps=3000,
    wm_steps=2000,
    agent_steps=2000,
    regen=500,
    synth_ratio=0.5,
    seeds=3,
    episodes=5,
    ep_steps=500,
    num=128,
    sampler_steps=32,
    hidden=128,
    coeffs=(0.1, 0.3, 1.0, 3.0),
    long=64,
    ref_steps=256,
    ref_coeffs=(0.3, 1.0),
    agents={
        "Pendulum-v1": dict(agent_steps=7000, regen=1000, iql={"beta": 0.1}),
        "Pendulum-v1/random": {
            "agent_steps": 7000,
            "regen": 1000,
            "iql": {"beta": 0.3},
            "td3bc": {"alpha": 160.0},
        },
        "Hopper-v5": dict(agent_steps=5000, iql={"beta": 0.3}),
    },
    models={
        "Pendulum-v1": dict(base_channels=64, emb_dim=128, steps=8000),
        "Pendulum-v1/random": {"base_channels": 64, "emb_dim": 128, "steps": 8000},
        "Hopper-v5": dict(base_channels=64, emb_dim=128, steps=10000),
    },
)
# Pendulum-v1/random: the replay dataset leaves no headroom (real-only agents reach the swing-up optimum,
# about -150); on 20k random transitions real-only TD3+BC returns -1094 and IQL -1002 (2 seeds, real data
# only). It takes Pendulum-v1's settings, tuned on the replay data, but the agents' own: TD3+BC's alpha of
# {2.5, 10, 40, 160} and IQL's beta of {0.1, 0.3, 1, 3} with the best real-only validation return over
# updates 4000-7000 (benchmarks/policy_curve.py, 3 seeds):
# alpha 160 (-1124, -978, -597, -395), a weak pull toward the random actions, and beta 0.3
# (-1045, -981, -1019, -1124).
# the trajectory model: windows of 16 rows (the reference trains on 32 with stride 8 and a base-1024 U-Net);
# cfg["models"][task] overrides it per task (the full Hopper model: 4x wider, 10k updates). Windows lie inside
# episodes (padding "none"), the setting the tables in docs/policy/results.md were measured with; these tasks'
# episodes are long enough for that (docs/policy/data.md measures padding on short, terminating ones)
MODEL = dict(horizon=16, stride=4, base_channels=16, channel_mults=(1, 2), emb_dim=64, padding="none")


def split_task(task: str) -> tuple[str, str]:
    """A task, "ENV" or "ENV/BEHAVIOUR", as (environment id, behaviour that collects its dataset); the
    behaviour defaults to "replay", the medium-replay-like mixture."""
    env_id, _, behaviour = task.partition("/")
    behaviour = behaviour or "replay"
    if behaviour not in BEHAVIOURS:
        raise ValueError(
            f"task {task!r}: unknown behaviour {behaviour!r}; write ENV or ENV/BEHAVIOUR with "
            f"BEHAVIOUR one of {list(BEHAVIOURS)}"
        )
    return env_id, behaviour


def task_arg(text: str) -> str:
    """A command-line type for a task: ``text`` if :func:`split_task` accepts it, else a usage error."""
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
    """The benchmark's cache: ``$STEERDIFF_CACHE/policy_pgd`` (default ~/.cache/steerdiff/policy_pgd)."""
    return cache_dir("policy_pgd", create=False)


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def dataset(task: str, cfg: dict, seed: int, cache: Path | None):
    """The dataset collected for ``task`` and its cache folder (None without a cache)."""
    env_id, behaviour = split_task(task)
    data_args = dict(
        env_id=env_id,
        behaviour=behaviour,
        num_steps=cfg["data"],
        noise=0.1,
        seed=seed,
        max_episode_steps=cfg["ep_steps"],
    )
    if cache is None:
        return collect(**data_args), None
    root = cache / f"{env_id}-{_key(data_args)}"
    data_path = root / "data.hdf5"
    if data_path.exists():
        return load_d4rl(data_path, env_id), root
    real = collect(**data_args)
    save_d4rl(real, data_path)
    return real, root


def dataset_and_model(
    task: str, cfg: dict, seed: int, cache: Path | None, progress: bool = False
) -> tuple[OfflineDataset, PolicyGuidedPipeline, bool]:
    """The collected dataset, the trained trajectory model and whether it came from ``cache`` (trained and
    stored there as a bundle otherwise; an interrupted training run resumes from its last checkpoint)."""
    arch, steps = model_settings(task, cfg)
    model_cfg = ModelConfig(**arch, steps=steps, seed=seed)
    real, root = dataset(task, cfg, seed, cache)
    if root is None:
        return real, PolicyGuidedPipeline.train(real, model_cfg, progress=progress, device="cpu"), False
    run_dir = root / f"model-{_key(arch, steps, seed)}"
    bundle = run_dir / "model"
    cached = (bundle / "config.json").exists()
    if cached:
        return real, PolicyGuidedPipeline.from_pretrained(bundle, device="cpu"), True
    pipe = PolicyGuidedPipeline.train(
        real, model_cfg, checkpoint_dir=run_dir, progress=progress, device="cpu"
    )
    pipe.save_pretrained(bundle)
    return real, pipe, False


def run_task(
    task: str,
    cfg: dict,
    seed: int,
    cache: Path | None,
    agent_names=("td3bc", "iql"),
    agent_seeds: range | None = None,
) -> tuple[list, list, dict]:
    """Return rows, dynamics rows and info of ``task``. Agents train with seeds ``seed + s`` for s in
    ``agent_seeds`` (default range(cfg["seeds"])) and are evaluated on episodes 10 000 + s; the dataset and
    models keep ``seed``, so more agent seeds extend a run. The target policy of the dynamics table is the
    guided agent of the first of ``agent_names`` (TD3+BC by default) at the first seed."""
    agent_seeds = agent_seeds or range(cfg["seeds"])
    env_id, _ = split_task(task)
    t0 = time.perf_counter()
    real, pipe, cached = dataset_and_model(task, cfg, seed, cache)
    bound = action_bounds(env_id)
    t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    wms = {
        kind: WorldModel.fit(
            real,
            bound,
            WorldModelConfig(steps=cfg["wm_steps"], hidden=128, seed=seed, probabilistic=kind == "nll"),
        )
        for kind in ("nll", "mse")
    }
    t_wm = (time.perf_counter() - t0) / len(wms)
    rows, agents, per_seed = [], {}, {}
    for agent_name in agent_names:
        ag = agent_settings(task, cfg, agent_name)
        share = ag["synth_ratio"]
        for source, ratio, coeff in (
            ("real only", 0.0, 0.0),
            ("unguided synthetic", share, 0.0),
            ("policy-guided synthetic", share, 1.0),
        ):
            finals, norms, t0 = [], [], time.perf_counter()
            for s in agent_seeds:
                torch.manual_seed(seed + s)
                agent = make_agent(
                    agent_name,
                    real.obs_dim,
                    real.act_dim,
                    bound,
                    real.observations.mean(0),
                    real.observations.std(0),
                    **agent_hparams(task, agent_name, cfg),
                )
                synth = pipe.synthesizer(coeff, ag["synth_num"], cfg["sampler_steps"], seed=seed + s)
                train_agent(agent, real, ag["agent_steps"], 128, synth, ratio, ag["regen"], seed + s)
                ev = evaluate_policy(
                    agent, env_id, cfg["episodes"], seed=10_000 + s, max_episode_steps=cfg["ep_steps"]
                )
                finals.append(ev["return_mean"])
                norms.append(ev["normalized_mean"])
                if s == agent_seeds[0]:
                    agents[(agent_name, source)] = agent
            per_seed[f"{agent_name}, {source}"] = dict(zip(map(int, agent_seeds), finals, strict=True))
            norm = None if norms[0] is None else (float(np.mean(norms)), float(np.std(norms)))
            rows.append(
                [
                    task,
                    agent_name,
                    source,
                    ag["agent_steps"],
                    f"{ratio:.2f}",
                    float(np.mean(finals)),
                    float(np.std(finals)),
                    None if norm is None else norm[0],
                    None if norm is None else norm[1],
                    (time.perf_counter() - t0) / len(agent_seeds),
                ]
            )

    target = agents[(agent_names[0], "policy-guided synthetic")]
    dyn_rows = []

    def dyn_row(label: str, make, rows: int):
        t0 = time.perf_counter()
        ds = make()
        dt = time.perf_counter() - t0
        err = dynamics_error(ds, env_id, seed=seed)  # every transition
        dyn_rows.append(
            [
                task,
                label,
                rows,
                policy_log_likelihood(target, ds),
                float(np.nanmean(err)),
                float(np.nanmedian(err)),
                len(ds),
                dt,
            ]
        )

    def diffusion(coeff: float, length: int, steps: int = cfg["sampler_steps"], churn: float = 0.0, **kw):
        return lambda: pipe.synthesize(
            target, coeff, cfg["num"], steps, length=length, seed=seed + 7, churn=churn, **kw
        )

    def world_model(kind: str, sample: bool, length: int):
        starts = real.observations[np.random.default_rng(seed).choice(len(real), cfg["num"])]
        gen = torch.Generator().manual_seed(seed)
        return lambda: wms[kind].rollout(target, starts, length - 1, gen, env_id, sample=sample)

    wm_kinds = [
        ("MOPO-style: Gaussian ensemble, sampled", "nll", True),
        ("Gaussian ensemble, member mean", "nll", False),
        ("MSE ensemble, member mean (deterministic)", "mse", False),
    ]
    short = pipe.horizon
    dyn_row("diffusion, unguided", diffusion(0.0, short), short)
    for c in cfg["coeffs"]:
        dyn_row(f"diffusion, guided λ={c:g}", diffusion(c, short), short)
    ref_steps, ref_churn = cfg["ref_steps"], min(80 / cfg["ref_steps"], 2**0.5 - 1)
    dyn_row(
        f"diffusion, guided λ=1, Heun {ref_steps} + S_churn 80",
        diffusion(1.0, short, ref_steps, ref_churn),
        short,
    )
    for c in cfg["ref_coeffs"]:
        dyn_row(
            f"diffusion, guided λ={c:g}, reference-style",
            diffusion(c, short, apply="sample", at="noisy"),
            short,
        )
    for label, kind, smp in wm_kinds:
        dyn_row(f"world model, {label}", world_model(kind, smp, short), short)
    dyn_row("diffusion, guided λ=1", diffusion(1.0, cfg["long"]), cfg["long"])
    for label, kind, smp in wm_kinds[::2]:
        dyn_row(f"world model, {label}", world_model(kind, smp, cfg["long"]), cfg["long"])
    dyn_rows.append([task, "real data", "-", policy_log_likelihood(target, real), 0.0, 0.0, len(real), 0.0])
    copy = ((real.next_observations - real.observations).astype(np.float64) ** 2).mean(1)
    dyn_rows.append(
        [
            task,
            "scale: real data with s' := s",
            "-",
            None,
            float(copy.mean()),
            float(np.median(copy)),
            len(real),
            0.0,
        ]
    )
    rets = real.episode_returns()
    norm = normalized_score(env_id, rets)
    rows.append(
        [
            task,
            "-",
            "behaviour data (its episodes)",
            "-",
            "-",
            float(rets.mean()),
            float(rets.std()),
            None if norm is None else float(norm.mean()),
            None if norm is None else float(norm.std()),
            0.0,
        ]
    )
    arch, steps = model_settings(task, cfg)
    info = {
        "env": task,
        "transitions": len(real),
        "model_width": arch["base_channels"],
        "model_steps": steps,
        "model_cached": cached,
        "model_seconds": t_model,
        "world_model_seconds": t_wm,
        "agents": ag,
        "rows": arch["horizon"],
        "returns_per_seed": per_seed,
    }
    return rows, dyn_rows, info


COEFF = {"unguided": 0.0, "guided": 1.0}  # the benchmark's guidance coefficients


class TimedSynthesizer:
    """A synthesizer that records the wall seconds of each call (one synthetic set)."""

    def __init__(self, synth: Synthesizer):
        self.synth, self.seconds = synth, []

    def __call__(self, policy=None):
        t0 = time.perf_counter()
        out = self.synth(policy)
        self.seconds.append(time.perf_counter() - t0)
        return out


def curve(
    task: str,
    agent_name: str,
    cfg: dict,
    steps: int,
    every: int,
    seeds: int,
    episodes: int,
    seed: int,
    cache: Path | None,
    data: str = "real",
    synth_num: int | None = None,
    synth_ratio: float | None = None,
    hparams: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, float, list]:
    """(updates, returns of shape (seeds, evaluations), seconds per seed, seconds per synthetic set).

    ``data``: "real" (real batches only), "unguided" or "guided" (a ``synth_ratio`` share of each batch from
    sets of ``synth_num`` windows, defaults the benchmark's, regenerated every K updates). ``hparams``: agent
    hyper-parameters over the benchmark's."""
    env_id, _ = split_task(task)
    ag = agent_settings(task, cfg, agent_name)  # --synth-num and --synth-ratio are checked by the parser
    if synth_num is not None:
        ag["synth_num"] = synth_num
    if synth_ratio is not None:
        ag["synth_ratio"] = synth_ratio
    if data == "real":
        real, _ = dataset(task, cfg, seed, cache)
        model = None
    else:
        real, pipe, _ = dataset_and_model(task, cfg, seed, cache)
        model = pipe
    bound = action_bounds(env_id)
    returns, gen_seconds, t0 = [], [], time.perf_counter()
    for s in range(seeds):
        torch.manual_seed(seed + s)
        agent = make_agent(
            agent_name,
            real.obs_dim,
            real.act_dim,
            bound,
            real.observations.mean(0),
            real.observations.std(0),
            **agent_hparams(task, agent_name, cfg) | (hparams or {}),
        )

        def score(step, policy, s=s):
            ev = evaluate_policy(
                policy, env_id, episodes, seed=20_000 + 100 * s, max_episode_steps=cfg["ep_steps"]
            )
            return {"return": ev["return_mean"]}

        synth, ratio = None, 0.0
        if model is not None:
            synth = TimedSynthesizer(
                model.synthesizer(COEFF[data], ag["synth_num"], cfg["sampler_steps"], seed=seed + s)
            )
            ratio = ag["synth_ratio"]
        hist = train_agent(
            agent,
            real,
            steps,
            128,
            synth,
            ratio,
            ag["regen"],
            seed=seed + s,
            callback=score,
            eval_every=every,
        )
        returns.append([e["return"] for e in hist["evals"]])
        gen_seconds += [] if synth is None else synth.seconds
    updates = np.array([e["step"] for e in hist["evals"]])
    return updates, np.array(returns), (time.perf_counter() - t0) / seeds, gen_seconds


def parse_hparams(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs as AgentConfig overrides, each value cast to the field's type; a ``ValueError``
    names a bad pair and the keys there are."""
    fields = {f.name: f.type for f in dataclasses.fields(AgentConfig)}
    allowed = sorted(set(fields) - {"obs_dim", "act_dim", "action_bound"})
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in allowed:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {allowed}")
        cast = {"int": int, "float": float}[fields[key]]
        try:
            out[key] = cast(value)
        except ValueError:
            raise ValueError(f"--set {pair!r}: {key} takes a number ({fields[key]})") from None
    return out
