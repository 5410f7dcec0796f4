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
the process's CPU time per call, which waiting for a CPU on a shared machine does not inflate;
``ratio`` is steerdiff's median over the peer's (below 1: steerdiff is faster). ``ratio (wall)`` is the
same with wall-clock medians, ``ratio (wall, min)`` with each side's fastest repetition.

    python benchmarks/policy_speed.py --quick           # under a minute
    python benchmarks/policy_speed.py --json out.json   # more repetitions

Run it in the environment that has d3rlpy (see benchmarks/policy_peers.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def pgd_worker(repo: str, spec: dict) -> None:
    """Run in the environment that has JAX, flax and optax (``--pgd-python``): build the official code's
    U-Net, EDM train step and guided sampler (jit-compiled, warmed up), then answer ``train K`` / ``sample K``
    on stdin with this process's CPU and wall seconds for K calls. No torch or steerdiff here."""
    import types

    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # XLA's threads share one CPU, as torch's one
    sys.path.insert(0, repo)
    # the official modules import these for logging, data loading and det_guidance only, none used here
    sys.modules.setdefault("wandb", types.ModuleType("wandb"))
    gym = types.ModuleType("gym")
    gym.spaces = types.SimpleNamespace(Dict=dict, Box=object)
    sys.modules.setdefault("gym", gym)
    distrax = types.ModuleType("distrax")
    distrax.Normal = None
    sys.modules.setdefault("distrax", distrax)
    from functools import partial

    import jax
    import jax.numpy as jnp
    import optax
    from diffusion import edm
    from flax.training.train_state import TrainState
    from models.diffusion import UNet

    obs, act, seq, hidden = spec["obs_dim"], spec["act_dim"], spec["length"], spec["agent_hidden"]
    ch = obs + act + 2
    key = jax.random.PRNGKey(0)
    net = UNet(spec["features"], spec["blocks"])
    params = net.init(key, jnp.ones((2, seq, ch)), jnp.ones((1,)))
    state = TrainState.create(apply_fn=net.apply, params=params, tx=optax.adam(spec["lr"]))
    hyper = edm.DenoiserHyperparams(diffusion_timesteps=spec["steps"], s_churn=0.0)
    train = jax.jit(partial(edm.train_step, denoiser_hyperparams=hyper))
    data = jax.random.normal(key, (spec["batch"], seq, ch))

    # a Gaussian policy with a tanh mean and a state-independent std, as the official IQL actor
    def dense(k, i, o):
        return jax.random.normal(k, (i, o)) / jnp.sqrt(i), jnp.zeros(o)

    keys = jax.random.split(key, 3)
    pparams = {
        "layers": [dense(keys[0], obs, hidden), dense(keys[1], hidden, hidden), dense(keys[2], hidden, act)],
        "log_std": jnp.zeros(act),
    }

    class Normal:  # distrax.Normal's log_prob, elementwise
        def __init__(self, loc, scale):
            self.loc, self.scale = loc, scale

        def log_prob(self, x):
            z = (x - self.loc) / self.scale
            return -0.5 * z**2 - jnp.log(self.scale) - 0.5 * jnp.log(2 * jnp.pi)

    def agent_apply(p, o):
        h = o
        for w, b in p["layers"][:-1]:
            h = jax.nn.relu(h @ w + b)
        w, b = p["layers"][-1]
        return Normal(jnp.tanh(h @ w + b), jnp.exp(p["log_std"]))

    unit = {"mean": jnp.zeros(1), "std": jnp.ones(1)}
    stats = {
        "obs": {"mean": jnp.zeros(obs), "std": jnp.ones(obs)},
        "action": {"mean": jnp.zeros(act), "std": jnp.ones(act)},
        "reward": unit,
        "done": unit,
    }

    @jax.jit
    def sample(rngs, state, pparams):
        one = partial(
            edm.sample_trajectory,
            denoiser_state=state,
            seq_len=seq,
            obs_dim=obs,
            action_dim=act,
            denoiser_norm_stats=stats,
            denoiser_hyperparams=hyper,
            policy_guidance_coeff=spec["coeff"],
            policy_guidance_cosine_coeff=0.3,
            normalize_action_guidance=True,
            agent_apply_fn=agent_apply,
            agent_params=pparams,
        )
        return jax.vmap(one)(rngs)

    rng = [key]

    def run(job):
        rng[0], k = jax.random.split(rng[0])
        if job == "train":
            nonlocal_state[0], loss = train(k, data, nonlocal_state[0])
            loss.block_until_ready()
        else:
            jax.block_until_ready(sample(jax.random.split(k, spec["num"]), nonlocal_state[0], pparams))

    nonlocal_state = [state]
    for job in ("train", "sample"):
        for _ in range(2):
            run(job)  # compile and warm up
    n_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
    # XLA's count of one network call on `batch` windows (convolutions, products and elementwise work)
    cost = jax.jit(net.apply).lower(params, data, jnp.ones((1,))).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    info = {"ready": True, "params": int(n_params), "flops": float(cost["flops"]), "jax": jax.__version__}
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        job, k = line.split()
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(int(k)):
            run(job)
        print(json.dumps({"cpu": time.process_time() - c0, "wall": time.perf_counter() - t0}), flush=True)


if __name__ == "__main__" and sys.argv[1:2] == ["--pgd-worker"]:
    pgd_worker(sys.argv[2], json.loads(sys.argv[3]))
    raise SystemExit(0)

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from policy_peers import d3rlpy_agent, d3rlpy_dataset, load_d3rlpy  # noqa: E402

from steerdiff.core import set_threads  # noqa: E402
from steerdiff.core.benchmarking import environment, print_table, write_json  # noqa: E402
from steerdiff.policy import action_bounds, make_agent  # noqa: E402
from steerdiff.policy.benchmark import QUICK, dataset, default_cache  # noqa: E402
from steerdiff.policy.training import TransitionBuffer  # noqa: E402

TASK = "Hopper-v5"  # the benchmark's quick Hopper dataset: 2000 "replay" transitions, 11-d obs, 3-d actions


def timed(fn):
    """``fn()`` as a job of ``k`` calls that returns (CPU seconds of this process, wall seconds)."""

    def job(k):
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(k):
            fn()
        return time.process_time() - c0, time.perf_counter() - t0

    return job


def interleaved(jobs: dict, repeats: int, inner: int, warmup: int = 2) -> dict:
    """{name: {"wall": [...], "cpu": [...]}}: seconds per call in each repetition, wall clock and CPU time
    of the process that ran it; ``jobs[name](k)`` runs ``k`` calls and returns (cpu, wall). The jobs
    alternate repetition by repetition, their order reversed every other repetition."""
    for job in jobs.values():
        job(warmup)
    times = {k: {"wall": [], "cpu": []} for k in jobs}
    names = list(jobs)
    for r in range(repeats):
        for k in names if r % 2 == 0 else names[::-1]:
            cpu, wall = jobs[k](inner)
            times[k]["cpu"].append(cpu / inner)
            times[k]["wall"].append(wall / inner)
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
                "steerdiff": timed(lambda ours=ours, b=t_batch: ours.update(b)),
                "d3rlpy": timed(lambda algo=algo, b=np_batch: algo.update(b)),
                "d3rlpy core": timed(peer_core),
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
                "steerdiff": timed(lambda ours=ours, buf=buf, gen=gen: ours.update(buf.sample(batch, gen))),
                "d3rlpy": timed(lambda algo=algo: algo.update(peer_data.sample_transition_batch(batch))),
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


# the diffusion rows' setting: each code's own U-Net, three levels, at about the same size (1.1M parameters:
# steerdiff base 32 channels, the official code 80 features), the official defaults for window length (32
# rows), batch (32) and learning rate, 32 guided windows in 32 Heun steps, an IQL-sized policy
PGD = dict(
    features=80,
    ours_base=32,
    ours_emb=64,
    blocks=3,
    length=32,
    batch=32,
    num=32,
    steps=32,
    lr=2e-3,
    coeff=1.0,
    agent_hidden=256,
)


def pgd_rows(python: str, repo: str, repeats: int, inner: int, cache) -> tuple[list, dict, list]:
    """Diffusion train step and guided sample: steerdiff against the official JAX code in a worker process
    (:func:`pgd_worker`), alternating with it repetition by repetition."""
    from steerdiff.core import EDM, Denoiser, build_network
    from steerdiff.policy import Normalizer, PolicyGuidance, SamplerConfig, TrajectoryDiffusion

    real, _ = dataset(TASK, QUICK, 0, cache)
    bound = action_bounds(TASK)
    spec = dict(PGD, obs_dim=real.obs_dim, act_dim=real.act_dim)
    worker = subprocess.Popen(
        [python, str(Path(__file__).resolve()), "--pgd-worker", repo, json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    first = worker.stdout.readline()
    if not first:
        worker.wait()
        return [], {}, [f"the official code did not start under {python} (exit code {worker.returncode})"]
    info = json.loads(first)

    def peer(job):
        def run(k):
            worker.stdin.write(f"{job} {k}\n")
            worker.stdin.flush()
            out = json.loads(worker.stdout.readline())
            return out["cpu"], out["wall"]

        return run

    # steerdiff: the trajectory model's network and training step (core: EDM loss, AdamW, clipping)
    normalizer = Normalizer.fit(real, bound, mask=False)
    torch.manual_seed(0)
    net = build_network(
        "unet1d",
        in_channels=normalizer.channels,
        base_channels=PGD["ours_base"],
        channel_mults=tuple(2**i for i in range(PGD["blocks"])),
        emb_dim=PGD["ours_emb"],
    )
    denoiser = Denoiser(net, "edm", sigma_data=1.0)
    opt = torch.optim.AdamW(denoiser.parameters(), lr=PGD["lr"])
    schedule, gen = EDM(), torch.Generator().manual_seed(0)
    x0 = torch.randn(PGD["batch"], normalizer.channels, PGD["length"], generator=gen)

    def train_step():
        sigma = schedule.sample_training_sigma(PGD["batch"], generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        loss = denoiser.loss(x0, sigma, noise).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(denoiser.parameters(), 1.0)
        opt.step()

    model = TrajectoryDiffusion(denoiser, normalizer, TASK, PGD["length"])
    agent = make_agent("iql", real.obs_dim, real.act_dim, bound, hidden=PGD["agent_hidden"]).eval()
    guidance = [
        PolicyGuidance(
            policy=agent,
            normalizer=normalizer,
            coeff=PGD["coeff"],
            cosine=0.3,
            normalize=True,
            at="noisy",
            apply="sample",
        )
    ]
    sampler = SamplerConfig(steps=PGD["steps"], solver="heun")

    def guided_sample():
        model.sample(PGD["num"], PGD["length"], guidance, sampler, gen)

    times = {}
    try:
        times["train"] = interleaved(
            {"steerdiff": timed(train_step), "official": peer("train")}, repeats, max(1, inner // 4)
        )
        times["sample"] = interleaved(
            {"steerdiff": timed(guided_sample), "official": peer("sample")}, repeats, 1, warmup=1
        )
    finally:
        worker.stdin.close()
        worker.wait()
    ours_params = sum(p.numel() for p in net.parameters())
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        denoiser(x0, torch.ones(PGD["batch"]))
    flops = (counter.get_total_flops(), info["flops"])
    setting = (
        f"U-Net {ours_params / 1e6:.2f}M / {info['params'] / 1e6:.2f}M params, "
        f"{flops[0] / 1e9:.2f} / {flops[1] / 1e9:.2f} GFLOP a call on {PGD['batch']} windows, "
        f"{PGD['length']} rows x {normalizer.channels} channels"
    )
    rows = [
        speed_row(
            "diffusion train step",
            f"{setting}, batch {PGD['batch']}",
            times["train"]["steerdiff"],
            times["train"]["official"],
            "official PGD (JAX, jit)",
        ),
        speed_row(
            "guided trajectory sample",
            f"{setting}, {PGD['num']} windows, Heun {PGD['steps']} steps, IQL policy {PGD['agent_hidden']} x 2",
            times["sample"]["steerdiff"],
            times["sample"]["official"],
            "official PGD (JAX, jit)",
        ),
    ]
    notes = [
        f"official policy-guided diffusion code under JAX {info['jax']} on CPU, jit-compiled (compilation "
        "and warm-up excluded), its process pinned to one CPU; its ms count the CPU time of all its "
        "threads. Same data shape, batch, sample count, steps and guidance (at the noisy sample, "
        "normalised, cosine 0.3, no churn); the networks are each code's own U-Net, three levels, at about "
        "the same size (parameters in the setting: steerdiff / official). steerdiff's train step clips the "
        "gradient norm (the core trainer's default); the official one does not. Neither includes the EMA "
        "update."
    ]
    notes.append(
        "GFLOP a call: torch's FlopCounterMode for steerdiff (convolutions and matrix products), XLA's cost "
        "analysis for the official network (which adds elementwise work)."
    )
    return rows, {**times, "official": info, "flops": flops}, notes


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
    p.add_argument(
        "--jobs",
        nargs="+",
        default=["agents", "diffusion"],
        choices=["agents", "diffusion"],
        help="which rows to measure (default: %(default)s)",
    )
    p.add_argument(
        "--pgd-python",
        default=None,
        help="a Python with jax, flax and optax: adds the official policy-guided diffusion code's rows",
    )
    p.add_argument(
        "--pgd-repo",
        default=None,
        help="a checkout of EmptyJackson/policy-guided-diffusion (the official code), for --pgd-python",
    )
    a = p.parse_args(argv)
    if (a.pgd_python is None) != (a.pgd_repo is None):
        p.error("--pgd-python and --pgd-repo go together: give both, or neither")
    if a.pgd_repo is not None and not (Path(a.pgd_repo) / "diffusion" / "edm.py").exists():
        p.error(f"--pgd-repo {a.pgd_repo}: no diffusion/edm.py there; give a checkout of the official code")
    repeats = a.repeats or (5 if a.quick else 7)
    inner = a.inner or (20 if a.quick else 50)
    if repeats < 1 or inner < 1:
        p.error("--repeats and --inner must be >= 1")
    set_threads(a.threads)
    d3rlpy = load_d3rlpy()
    rows, raw, notes = [], {}, []
    load0 = os.getloadavg()[0]
    if "agents" not in a.jobs:
        pass
    elif d3rlpy is None:
        notes.append(
            "d3rlpy is not installed here: no agent rows (install it in its own environment, see "
            "benchmarks/policy_peers.py)."
        )
    else:
        r, raw["agents"] = agent_rows(d3rlpy, a.hidden, a.batch, repeats, inner, a.cache)
        rows += r
    if "diffusion" not in a.jobs:
        pass
    elif a.pgd_python is None:
        notes.append(
            "No diffusion rows: the official policy-guided diffusion code is JAX; give --pgd-python (a Python "
            "with jax, flax and optax) and --pgd-repo (its checkout) to add them."
        )
    else:
        r, raw["pgd"], more = pgd_rows(a.pgd_python, a.pgd_repo, repeats, inner, a.cache)
        rows += r
        notes += more
    load1 = os.getloadavg()[0]
    notes.append(
        f"{repeats} repetitions of {inner} calls (diffusion rows: {max(1, inner // 4)} train steps, one "
        "sample), libraries alternating, one CPU thread each. ms: median "
        "CPU time of the process per call (robust to waiting for a CPU on a shared machine); "
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
