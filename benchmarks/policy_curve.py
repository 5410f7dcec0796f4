"""Return curve of an offline agent on validation episodes: where does it stop improving, and which
agent setting is better?

Picks the agent settings of benchmarks/policy_pgd.py (update count, windows per synthetic set). The agent
(TD3+BC or IQL, the same size and batch as in policy_pgd.py) trains on the benchmark's cached dataset of a
task (``--env``: ENV for its "replay" dataset, or ENV/BEHAVIOUR), on real data only or with the
benchmark's synthetic share of each batch drawn from unguided or policy-guided synthetic sets (the
benchmark's trajectory model, sampler and regeneration interval; the set size from ``--synth-num``), and is
evaluated in the simulator every ``--every`` updates on episodes that are NOT the ones the final
evaluation of policy_pgd.py uses (seeds 20 000+ here, 10 000+ there), so settings are chosen on a
validation set of episodes.

    python benchmarks/policy_curve.py --quick
    python benchmarks/policy_curve.py --env Pendulum-v1 --agent td3bc --steps 12000 --every 1000 --seeds 2
    python benchmarks/policy_curve.py --env Pendulum-v1 --steps 7000 --every 1000 --data real guided \
        --synth-num 128 1024
    python benchmarks/policy_curve.py --env Pendulum-v1 --steps 7000 --every 1000 --data guided \
        --synth-ratio 0.25 0.5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from steerdiff.core import set_threads
from steerdiff.core.benchmarking import environment, print_table, write_json
from steerdiff.policy.benchmark import (
    FULL,
    QUICK,
    agent_hparams,
    agent_settings,
    curve,
    default_cache,
    model_settings,
    parse_hparams,
    task_arg,
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument(
        "--env",
        default="Pendulum-v1",
        metavar="TASK",
        type=task_arg,
        help="ENV (its replay dataset) or ENV/BEHAVIOUR, as in policy_pgd.py (default %(default)s)",
    )
    p.add_argument("--agent", default="td3bc", choices=["td3bc", "iql"])
    p.add_argument("--steps", type=int, default=None, help="updates (default: 400 quick, 12000 full)")
    p.add_argument("--every", type=int, default=None, help="evaluate every this many updates")
    p.add_argument(
        "--data",
        nargs="+",
        default=["real"],
        choices=["real", "unguided", "guided"],
        help="training data, one curve each (synthetic: the benchmark's share and regeneration)",
    )
    p.add_argument(
        "--synth-num",
        nargs="+",
        type=int,
        default=None,
        help="windows per synthetic set, one curve each (default: the benchmark's per-env setting)",
    )
    p.add_argument(
        "--synth-ratio",
        nargs="+",
        type=float,
        default=None,
        help="synthetic share of each batch, one curve each (default: the benchmark's per-env setting)",
    )
    p.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="agent hyper-parameters over the benchmark's (steerdiff.policy.agents.AgentConfig), "
        "e.g. --set beta=1 expectile=0.9",
    )
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--cache",
        type=Path,
        default=default_cache(),
        help="folder for datasets and trained models (default %(default)s)",
    )
    p.add_argument("--no-cache", action="store_true")
    a = p.parse_args(argv)
    if a.seeds < 1 or a.episodes < 1:
        p.error("--seeds and --episodes must be >= 1")
    if a.synth_num is not None and min(a.synth_num) < 1:
        p.error("--synth-num values must be >= 1")
    if a.synth_ratio is not None and not all(0 < r <= 1 for r in a.synth_ratio):
        p.error("--synth-ratio values must lie in (0, 1]")
    try:
        hparams = parse_hparams(a.set)
    except ValueError as err:
        p.error(str(err))
    set_threads(a.threads)
    cfg = QUICK if a.quick else FULL
    steps = a.steps or (400 if a.quick else 12000)
    every = a.every or max(1, steps // 10)
    if every > steps:
        p.error(f"--every ({every}) exceeds --steps ({steps}); pick --every <= --steps")
    ag = agent_settings(a.env, cfg, a.agent)
    runs = [
        (d, None, None) if d == "real" else (d, n, r)
        for d in a.data
        for n in (a.synth_num or [ag["synth_num"]])
        for r in (a.synth_ratio or [ag["synth_ratio"]])
    ]
    runs = list(dict.fromkeys(runs))  # real-only once, whatever --synth-num and --synth-ratio say
    t0 = time.perf_counter()
    rows, curves = [], []
    chosen = agent_hparams(a.env, a.agent, cfg) | hparams
    for data, num, ratio in runs:
        updates, rets, per_seed, gen = curve(
            a.env,
            a.agent,
            cfg,
            steps,
            every,
            a.seeds,
            a.episodes,
            a.seed,
            None if a.no_cache else a.cache,
            data,
            num,
            ratio,
            hparams,
        )
        gen_mean = float(np.mean(gen)) if gen else None
        rows += [
            [
                a.env,
                a.agent,
                data,
                "-" if num is None else num,
                "-" if ratio is None else ratio,
                int(u),
                float(r.mean()),
                float(r.std()),
                gen_mean,
                per_seed,
            ]
            for u, r in zip(updates, rets.T, strict=True)
        ]
        curves.append(
            {
                "data": data,
                "synth_num": num,
                "synth_ratio": ratio,
                "updates": updates.tolist(),
                "returns": rets.tolist(),
                "seconds_per_seed": per_seed,
                "generation_seconds": gen,
            }
        )
    print_table(
        "Return of an offline agent against updates (validation episodes)",
        [
            "env",
            "agent",
            "data",
            "windows / set",
            "synthetic share",
            "updates",
            "return",
            "± std over seeds",
            "gen s / set",
            "s / seed",
        ],
        rows,
        notes=[
            (
                f"{a.seeds} seeds, {a.episodes} episodes of <= {cfg['ep_steps']} steps per evaluation, "
                f"batch 128, hidden {cfg['hidden']}; synthetic: a share of each batch (default "
                f"{ag['synth_ratio']:.2f}), a new set every {ag['regen']} updates (the first "
                f"unguided), windows of {model_settings(a.env, cfg)[0]['horizon']} rows, Heun "
                f"{cfg['sampler_steps']} steps."
            ),
            f"agent hyper-parameters over AgentConfig's defaults: {chosen}",
        ],
    )
    total = time.perf_counter() - t0
    print(f"\nwall time {total:.1f} s ({'quick' if a.quick else 'full'})")
    if a.json:
        write_json(
            a.json,
            {
                "env": a.env,
                "agent": a.agent,
                "agents": ag,
                "hparams": chosen,
                "curves": curves,
                "seconds": total,
                "environment": environment(),
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
