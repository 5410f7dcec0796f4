"""Policy-guided diffusion on locally collected datasets: does guided synthetic data help offline agents,
and is its dynamics error below an autoregressive world model's at comparable policy likelihood?

For each task (Pendulum-v1 and Hopper-v5 with a "medium-replay"-like dataset, Pendulum-v1/random with
uniformly random actions; a task is ENV or ENV/BEHAVIOUR, BEHAVIOUR one of steerdiff.policy.collect's,
default replay): collect the dataset, train the trajectory diffusion model and an ensemble world model, then

1. train TD3+BC and IQL on real only / real + unguided synthetic / real + policy-guided synthetic (a set share
   of each batch synthetic, regenerated from the current policy every K updates) and report the final
   return in the simulator (D4RL-normalised where reference scores exist), mean +- std over seeds, with
   wall time;
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
import sys
import time
from pathlib import Path

from steerdiff.core import set_threads
from steerdiff.core.benchmarking import environment, print_table, write_json
from steerdiff.policy import BEHAVIOURS
from steerdiff.policy.benchmark import FULL, QUICK, default_cache, run_task, task_arg


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--envs",
        nargs="+",
        default=None,
        metavar="TASK",
        type=task_arg,
        help="tasks: ENV (the replay dataset) or ENV/BEHAVIOUR, BEHAVIOUR one of "
        f"{list(BEHAVIOURS)} (default: Pendulum-v1, Pendulum-v1/random, Hopper-v5; --quick leaves "
        "out Pendulum-v1 to stay under a minute)",
    )
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--cache",
        type=Path,
        default=default_cache(),
        help="folder for datasets and trained models (default %(default)s)",
    )
    p.add_argument("--no-cache", action="store_true", help="collect and train from scratch, store nothing")
    p.add_argument(
        "--agents",
        nargs="+",
        default=["td3bc", "iql"],
        choices=["td3bc", "iql"],
        help="offline agents to train; the first one's guided agent is the dynamics table's "
        "target policy (default %(default)s)",
    )
    p.add_argument(
        "--agent-seeds",
        nargs=2,
        type=int,
        default=None,
        metavar=("START", "STOP"),
        help="agent seeds range(START, STOP) (default: the setting's 0..seeds-1); the data and "
        "models stay those of --seed, so a run with new seeds extends one with others",
    )
    a = p.parse_args(argv)
    a.agents = list(dict.fromkeys(a.agents))  # each agent once, in the order given
    if a.envs is None:
        a.envs = (
            ["Pendulum-v1/random", "Hopper-v5"]
            if a.quick
            else ["Pendulum-v1", "Pendulum-v1/random", "Hopper-v5"]
        )
    cfg = QUICK if a.quick else FULL
    seeds = range(*a.agent_seeds) if a.agent_seeds else range(cfg["seeds"])
    if len(seeds) < 1:
        p.error(f"--agent-seeds {a.agent_seeds[0]} {a.agent_seeds[1]} is empty; STOP must exceed START")
    set_threads(a.threads)
    t_all = time.perf_counter()
    rows, dyn, infos = [], [], {}
    for task in a.envs:
        r, d, info = run_task(task, cfg, a.seed, None if a.no_cache else a.cache, a.agents, seeds)
        rows += r
        dyn += d
        infos[task] = info
    print_table(
        "Trajectory diffusion models and world models",
        [
            "task",
            "transitions",
            "U-Net base",
            "diffusion updates",
            "cached",
            "data + model s",
            "world model s",
        ],
        [
            [
                i["env"],
                i["transitions"],
                i["model_width"],
                i["model_steps"],
                i["model_cached"],
                i["model_seconds"],
                i["world_model_seconds"],
            ]
            for i in infos.values()
        ],
    )
    print_table(
        "Final return of offline agents (mean ± std over seeds)",
        [
            "task",
            "agent",
            "training data",
            "updates",
            "synth share",
            "return",
            "± std",
            "normalized",
            "± std",
            "s / seed",
        ],
        rows,
        notes=[
            "batch 128; synth share: fraction of each batch drawn from the synthetic set, which is "
            "made unguided first, then from the current policy every K updates ("
            + ", ".join(
                f"{e}: K = {i['agents']['regen']}, {i['agents']['synth_num']} windows of {i['rows']} rows"
                for e, i in infos.items()
            )
            + ").",
            (
                f"agent seeds {seeds.start}..{seeds.stop - 1}, {cfg['episodes']} evaluation episodes "
                f"of <= {cfg['ep_steps']} steps."
            ),
            "normalized: D4RL reference returns (none exist for Pendulum).",
        ],
    )
    print_table(
        f"Dynamics error vs target-policy likelihood (target: guided {a.agents[0]}, seed {seeds[0]})",
        ["task", "data", "rows", "log π(a|s)", "dyn MSE mean", "dyn MSE median", "transitions", "gen s"],
        dyn,
        notes=[
            (
                "dyn MSE: on every generated transition, the simulator is reset to the generated state, "
                "steps the generated action, and the squared error to the generated next state is "
                "averaged over observation dims."
            ),
            (
                f"rows: window length; a world-model rollout of the same policy has rows - 1 steps from "
                f"{cfg['num']} real start states, the diffusion model samples {cfg['num']} windows."
            ),
            (
                "world models: 5 members, each its own bootstrap batches; per step and row a random "
                "member. MOPO-style samples that member's Gaussian; 'member mean' takes its mean."
            ),
            (
                f"diffusion: Heun {cfg['sampler_steps']} steps without churn unless named (the "
                "reference samples with Heun 256 steps, S_churn 80). Guidance moves x0-hat by λ_k g, "
                "g the normalised gradient at x0-hat; reference-style moves the noisy sample by λ_k g, "
                "g taken there, once per step (the reference code's default)."
            ),
        ],
    )
    total = time.perf_counter() - t_all
    print(f"\nwall time {total:.1f} s ({'quick' if a.quick else 'full'})")
    if a.json:
        write_json(
            a.json,
            {
                "config": cfg,
                "returns": rows,
                "dynamics": dyn,
                "info": infos,
                "seconds": total,
                "environment": environment(),
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
