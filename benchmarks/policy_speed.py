"""Speed of the offline-RL domain's main jobs, steerdiff against d3rlpy and the official policy-guided
diffusion code, on the same input, as ratios measured in one run.

Rows:

* agent update (TD3+BC, IQL) on one prepared batch: steerdiff ``agent.update(batch)`` against d3rlpy's
  ``algo.update(batch)`` (numpy batch in, as its training loop calls it) and its ``impl.update`` (a torch
  batch already scaled: the networks and optimizers alone);
* agent training loop, per update: sample a batch from the dataset + update (steerdiff's TransitionBuffer,
  d3rlpy's replay buffer);
* diffusion train step and one guided trajectory sample: steerdiff against the official JAX code
  (EmptyJackson/policy-guided-diffusion), when JAX, flax and optax and a copy of that code are given
  (``--pgd-python``, ``--pgd-repo``); otherwise the table's notes say why those rows are missing.

Timing: one CPU thread per library; the libraries alternate repetition by repetition (the order flips each
time) so that load from other processes hits both alike. Each row's time is the median over repetitions of
the calling thread's CPU time per call, which waiting for a CPU on a shared machine does not inflate;
``ratio`` is steerdiff's median over the peer's (below 1: steerdiff is faster). ``ratio (wall)`` is the
same with wall-clock medians, ``ratio (wall, min)`` with each side's fastest repetition.

    python benchmarks/policy_speed.py --quick           # under a minute
    python benchmarks/policy_speed.py --json out.json   # more repetitions

Run it in the environment that has d3rlpy (see benchmarks/policy_peers.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from policy_peers import d3rlpy_agent, d3rlpy_dataset, load_d3rlpy  # noqa: E402

from steerdiff.core import set_threads  # noqa: E402
from steerdiff.core.benchmarking import environment, print_table, write_json  # noqa: E402
from steerdiff.policy import make_agent  # noqa: E402
from steerdiff.policy.benchmark import QUICK, dataset, default_cache  # noqa: E402
from steerdiff.policy.envs import action_bounds  # noqa: E402
from steerdiff.policy.training import TransitionBuffer  # noqa: E402

TASK = "Hopper-v5"  # the benchmark's quick Hopper dataset: 2000 "replay" transitions, 11-d obs, 3-d actions


def interleaved(fns: dict, repeats: int, inner: int, warmup: int = 2) -> dict:
    """{name: {"wall": [...], "cpu": [...]}}: seconds per call of each repetition, wall clock and this
    thread's CPU time; ``inner`` calls per repetition, the callables alternating repetition by repetition,
    their order reversed every other repetition."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: {"wall": [], "cpu": []} for k in fns}
    names = list(fns)
    for r in range(repeats):
        for k in names if r % 2 == 0 else names[::-1]:
            fn = fns[k]
            c0, t0 = time.thread_time(), time.perf_counter()
            for _ in range(inner):
                fn()
            times[k]["wall"].append((time.perf_counter() - t0) / inner)
            times[k]["cpu"].append((time.thread_time() - c0) / inner)
    return times


def speed_row(job: str, setting: str, ours: dict, peer: dict, peer_name: str) -> list:
    """CPU-time medians and their ratio (the main figure on a shared machine), then wall-clock medians'."""
    cpu_o, cpu_p = statistics.median(ours["cpu"]), statistics.median(peer["cpu"])
    wall_o, wall_p = statistics.median(ours["wall"]), statistics.median(peer["wall"])
    return [
        job,
        setting,
        peer_name,
        1e3 * cpu_o,
        1e3 * cpu_p,
        cpu_o / cpu_p,
        wall_o / wall_p,
        min(ours["wall"]) / min(peer["wall"]),
    ]


def agent_rows(d3rlpy, hidden: int, batch: int, repeats: int, inner: int, cache) -> tuple[list, dict]:
    from d3rlpy.torch_utility import TorchMiniBatch

    real, _ = dataset(TASK, QUICK, 0, cache)
    bound = action_bounds(TASK)
    mean, std = real.observations.mean(0), real.observations.std(0)
    peer_data = d3rlpy_dataset(d3rlpy, real)
    rows, raw = [], {}
    setting = f"{TASK}, {hidden} x 2 units, batch {batch}"
    for name in ("td3bc", "iql"):
        torch.manual_seed(0)
        ours = make_agent(name, real.obs_dim, real.act_dim, bound, mean, std, hidden=hidden).train()
        d3rlpy.seed(0)
        algo = d3rlpy_agent(d3rlpy, name, ours.config, mean, std, batch)
        algo.create_impl((real.obs_dim,), real.act_dim)
        # one batch, the same numbers for both libraries
        np_batch = peer_data.sample_transition_batch(batch)
        t_batch = {
            "obs": torch.as_tensor(np_batch.observations),
            "action": torch.as_tensor(np_batch.actions),
            "reward": torch.as_tensor(np_batch.rewards).reshape(-1),
            "done": torch.as_tensor(np_batch.terminals).reshape(-1),
            "next_obs": torch.as_tensor(np_batch.next_observations),
        }
        c = algo.config
        torch_batch = TorchMiniBatch.from_batch(
            np_batch,
            gamma=c.gamma,
            compute_returns_to_go=False,
            device="cpu:0",
            observation_scaler=c.observation_scaler,
            action_scaler=c.action_scaler,
            reward_scaler=c.reward_scaler,
        )
        step = [0]

        def peer_core(algo=algo, torch_batch=torch_batch, step=step):
            algo.impl.update(torch_batch, step[0])
            step[0] += 1

        times = interleaved(
            {
                "steerdiff": lambda ours=ours, b=t_batch: ours.update(b),
                "d3rlpy": lambda algo=algo, b=np_batch: algo.update(b),
                "d3rlpy core": peer_core,
            },
            repeats,
            inner,
        )
        label = {"td3bc": "TD3+BC", "iql": "IQL"}[name]
        rows.append(
            speed_row(f"{label} update", setting, times["steerdiff"], times["d3rlpy"], "d3rlpy update")
        )
        rows.append(
            speed_row(
                f"{label} update", setting, times["steerdiff"], times["d3rlpy core"], "d3rlpy impl.update"
            )
        )
        # the training loop: sample + update
        buf = TransitionBuffer(real)
        gen = torch.Generator().manual_seed(0)
        loop = interleaved(
            {
                "steerdiff": lambda ours=ours, buf=buf, gen=gen: ours.update(buf.sample(batch, gen)),
                "d3rlpy": lambda algo=algo: algo.update(peer_data.sample_transition_batch(batch)),
            },
            repeats,
            inner,
        )
        rows.append(
            speed_row(
                f"{label} training loop, per update",
                setting,
                loop["steerdiff"],
                loop["d3rlpy"],
                "d3rlpy sample + update",
            )
        )
        raw[name] = {"update": times, "loop": loop}
    return rows, raw


HEADERS = [
    "job",
    "setting",
    "peer",
    "steerdiff ms",
    "peer ms",
    "ratio",
    "ratio (wall)",
    "ratio (wall, min)",
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions, under a minute")
    p.add_argument("--hidden", type=int, default=256, help="agent width (default %(default)s, the papers')")
    p.add_argument("--batch", type=int, default=256, help="agent batch (default %(default)s, the papers')")
    p.add_argument("--repeats", type=int, default=None, help="repetitions (default 7; --quick 5)")
    p.add_argument("--inner", type=int, default=None, help="calls per repetition (default 50; --quick 20)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument(
        "--cache", type=Path, default=default_cache(), help="datasets folder (default %(default)s)"
    )
    a = p.parse_args(argv)
    repeats = a.repeats or (5 if a.quick else 7)
    inner = a.inner or (20 if a.quick else 50)
    if repeats < 1 or inner < 1:
        p.error("--repeats and --inner must be >= 1")
    set_threads(a.threads)
    d3rlpy = load_d3rlpy()
    rows, raw, notes = [], {}, []
    load0 = os.getloadavg()[0]
    if d3rlpy is None:
        notes.append(
            "d3rlpy is not installed here: no agent rows (install it in its own environment, see "
            "benchmarks/policy_peers.py)."
        )
    else:
        r, raw["agents"] = agent_rows(d3rlpy, a.hidden, a.batch, repeats, inner, a.cache)
        rows += r
    load1 = os.getloadavg()[0]
    notes.append(
        f"{repeats} repetitions of {inner} calls, libraries alternating, one CPU thread each. ms: median "
        "CPU time of the calling thread per call (robust to waiting for a CPU on a shared machine); "
        "ratio = steerdiff / peer of those medians (below 1: steerdiff faster); ratio (wall): of the "
        "wall-clock medians; ratio (wall, min): of each side's fastest repetition. Load average "
        f"{load0:.1f} -> {load1:.1f} on {os.cpu_count()} CPUs."
    )
    import gymnasium

    versions = {
        "gymnasium": gymnasium.__version__,
        "d3rlpy": None if d3rlpy is None else d3rlpy.__version__,
    }
    notes.append(
        f"versions: torch {torch.__version__}, gymnasium {versions['gymnasium']}, d3rlpy {versions['d3rlpy']}"
    )
    print_table("Offline RL: speed against the peers", HEADERS, rows, notes)
    if a.json:
        write_json(
            a.json,
            {
                "argv": sys.argv[1:],
                "environment": environment(threads=a.threads, **versions),
                "headers": HEADERS,
                "rows": rows,
                "notes": notes,
                "raw_seconds": raw,
                "load_average": [load0, load1],
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
