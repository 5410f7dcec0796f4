"""Cost model: the measured cost of one unit of work per domain here, and projections to the papers' scale.

    python benchmarks/cost_model.py --quick              # < 1 min: fewer repeats
    python benchmarks/cost_model.py --json docs/costs.json

Units (public APIs only; each domain's default network at its default batch, random weights: cost, not
quality): a training step, a no-grad denoiser evaluation per item at a sampling batch, a Navier-Stokes forward
solve per field at 32x32 and 64x64 (alone and batched), one guided sample per guidance family at a fixed
budget, one step of a TSDiff forecast window (100 paths), a TD3+BC update, a guided SCG music sample.
Each unit: a warm-up call, then the median of --repeats timed calls, on --threads torch threads (default 1:
the machine is shared; the load average is recorded before and after).

The projections (section "projections" of the JSON, printed last) are arithmetic on these measurements with
every assumption a named constant below: they are PROJECTIONS, not measurements. docs/costs.md explains them.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from steerdiff.core import (
    Denoiser,
    EnsembleKalmanGuidance,
    FeynmanKacSteering,
    ReconstructionGuidance,
    StochasticControlGuidance,
    TrainConfig,
    TreeSearchGuidance,
    build_network,
    get_schedule,
    sample,
    set_threads,
    sigma_grid,
    train,
    write_json,
)

# ---- assumptions of the projections (see docs/costs.md); every one is a guess stated as a number -------------
# Denoiser evaluations on one H200: FLOPs counted exactly (torch's FlopCounterMode, convolutions and matmuls),
# divided by an assumed sustained throughput. H200 peaks: ~990 TFLOP/s dense bf16, ~495 TF32, ~67 fp32; small
# U-Nets with GroupNorm and element-wise work sustain a fraction of that. Mid 100 TFLOP/s (bf16 autocast),
# range 30 (fp32, poor utilisation) to 300.
GPU_FLOPS = 100e12
GPU_FLOPS_RANGE = (30e12, 300e12)
# A network call on the GPU never costs less than its kernel launches: a sampling call (no grad) >= 1 ms, a
# training step of a small diffusion net (forward, backward, Adam, EMA; hundreds of kernels) >= 4 ms, a
# TD3+BC update (two critics, actor, targets) >= 1.5 ms. Ranges: half to double.
CALL_FLOOR_S = 1e-3
TRAIN_STEP_FLOOR_S = 4e-3
AGENT_UPDATE_FLOOR_S = 1.5e-3
# Rows per sampling call on one GPU (fits 141 GB for these small nets).
ROWS_PER_CALL = 4096
# Batched spectral Navier-Stokes solves are memory-bound (FFTs and element-wise passes over 2048 fields):
# 4.8 TB/s against a few GB/s for one loaded core here; we assume 200x the measured batched per-field time on
# one core (range 100-500x). The paper's repository reports 2-4 h per NS sample on an A100 with the PDE
# solver dominating (adaptive CFL time step, so more steps than our fixed dt = 0.01).
GPU_SPEEDUP_NS = 200.0
GPU_SPEEDUP_NS_RANGE = (100.0, 500.0)
# The spectral step costs ~ n^2 log n per field: 128x128 against 64x64 is 4 x log(128^2)/log(64^2) = 4.67x,
# at a fixed dt (our solver's and the paper's non-adaptive setting).
NS_GROWTH_64_TO_128 = 4 * math.log(128**2) / math.log(64**2)
# Dask (or any executor) over N workers: per sequential EnKG step the ensemble goes out (128x128 float32
# fields) and the 64x64 observations come back; 10 Gbit/s (1.25 GB/s) and 5 ms of scheduling per step.
NETWORK_BYTES_PER_S = 1.25e9
SCHEDULER_S_PER_STEP = 5e-3
# The paper-size networks, for their FLOP counts (built on the meta device: no memory, no time).
# EnKG's prior: ADM U-Net, 128 channels, mults 1,1,1,2,2, 1 block per level, attention at 16x16 (the paper:
# ~5M parameters; our UNet2D at these widths has ~20M, so its FLOPs are an upper bound).
PAPER_ENKG_PRIOR = dict(
    in_channels=1,
    base_channels=128,
    channel_mults=(1, 1, 1, 2, 2),
    num_res_blocks=1,
    attention_levels=(3,),
    mid_attention=True,
)
# SCG's DiT-XL on 256 latent tokens: ~119 GFLOP per forward (the DiT paper's figure for XL at 256 tokens),
# VAE decodes not counted.
PAPER_SCG_GFLOP = 119.0

# ---- the papers' scale (numbers from the reference notes) -------------------------------------------------
ENKG = dict(grid=128, particles=2048, steps=80, window=(5, 75), updates=2, ode_divisor=4, ode_max=20)
PGD = dict(agent_updates=1_000_000, sets=100, transitions_per_set=1_050_000, window=129, sampler_steps=256)
# TSDiff: 1000 epochs x 128 batches of 64; 100 paths x 100 DDPM steps per window; electricity's 370 series x
# 7 rolling test windows as the example dataset; self-guidance: one forward and one backward per step (~3x).
TSDIFF = dict(train_steps=1000 * 128, paths=100, sampler_steps=100, windows=370 * 7)
SCG = dict(ddpm_steps=1000, guided_steps=750, candidates=16, samples=100)


def gflop(name: str, shape, **config) -> float:
    """GFLOP of one forward of ``build_network(name, **config)`` on one item of ``shape`` (meta device)."""
    with torch.device("meta"):
        net = build_network(name, **config)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(torch.empty(1, *shape), torch.ones(1))
    return counter.get_total_flops() / 1e9


def timed(fn, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_step_s(denoiser: Denoiser, shape, batch: int, steps: int) -> float:
    """Seconds per training step of the core's trainer (EDM loss, Adam, EMA) at ``batch``."""
    data = torch.randn(max(4 * batch, 64), *shape, generator=torch.Generator().manual_seed(0))
    config = TrainConfig(steps=steps, batch_size=batch, checkpoint_every=0, log_every=steps, seed=0)
    train(denoiser, "edm", data, TrainConfig(steps=1, batch_size=batch, checkpoint_every=0), progress=False)
    t0 = time.perf_counter()
    train(denoiser, "edm", data, config, progress=False)
    return (time.perf_counter() - t0) / steps


def eval_item_s(denoiser: Denoiser, shape, batch: int, repeats: int) -> float:
    """Seconds per item of one no-grad denoiser evaluation at ``batch``."""
    x = torch.randn(batch, *shape)
    sigma = torch.full((batch,), 1.0)
    with torch.no_grad():
        return timed(lambda: denoiser(x, sigma), repeats) / batch


class Table:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, domain, unit, size, seconds, per=None, note=""):
        row = {"domain": domain, "unit": unit, "size": size, "ms": 1e3 * seconds, "note": note}
        if per:
            row["ms_per_item"] = 1e3 * seconds / per
            row["items"] = per
        self.rows.append(row)
        item = f"{row['ms_per_item']:10.3f}" if per else " " * 10
        print(f"{domain:10} {unit:34} {size:34} {row['ms']:11.2f} {item}  {note}", flush=True)
        return seconds


def measure(quick: bool, repeats: int) -> Table:
    t = Table()
    train_steps = 3 if quick else 10
    print(f"{'domain':10} {'unit':34} {'size':34} {'ms':>11} {'ms/item':>10}")

    # ---- core: one guided sample per family at a fixed budget ----
    torch.manual_seed(0)
    shape = (1, 32, 32)
    den = Denoiser(
        build_network("unet2d", in_channels=1, base_channels=16, channel_mults=(1, 2), mid_attention=False),
        "edm",
        sigma_data=1.0,
    ).eval()
    steps, k = (8, 4) if quick else (16, 8)
    sigmas = sigma_grid(get_schedule("edm"), steps)
    obs = torch.randn(1, 1, 16, 16)
    forward = lambda x: x[..., ::2, ::2]  # noqa: E731  (a linear observation: every other grid point)
    loss = lambda x0: (forward(x0) - obs).pow(2).flatten(1).sum(1)  # noqa: E731
    reward = lambda x0: -loss(x0)  # noqa: E731
    families = {
        "unguided": (1, [], "ddpm"),
        "dps": (1, [ReconstructionGuidance(loss, scale=1.0)], "ddpm"),
        "scg": (1, [StochasticControlGuidance(reward, num_candidates=k)], "ddpm"),
        "smc": (k, [FeynmanKacSteering(reward, k, lam=1.0)], "ddpm"),
        "tree": (2, [TreeSearchGuidance(reward, num_beams=2, branch=k // 2)], "ddpm"),
        "enkg": (k, [EnsembleKalmanGuidance(forward, obs[0], k, ode_steps=1)], "euler"),
    }
    for name, (rows, guidance, solver) in families.items():
        gen = torch.Generator().manual_seed(0)
        costs = {}

        def run(rows=rows, guidance=guidance, solver=solver, gen=gen, costs=costs, grad=name == "dps"):
            x = float(sigmas[0]) * torch.randn(rows, *shape, generator=gen)
            with torch.set_grad_enabled(grad):
                costs["c"] = sample(den, x, sigmas, solver, guidance=guidance, generator=gen).costs

        s = timed(run, max(1, repeats // 2))
        c = costs["c"]
        t.add(
            "core",
            f"guided sample: {name}",
            f"UNet2D 16ch 32x32, {steps} steps, k={k}",
            s,
            note=f"NFE {c.network_evals}, fwd {c.forward_evals}, grad {c.gradient_evals}",
        )

    # ---- inverse: Navier-Stokes forward solves and the prior ----
    from steerdiff.inverse import NavierStokes2D

    for size in (32, 64):
        ns = NavierStokes2D(size=size)
        w1, wb = torch.randn(1, 1, size, size), torch.randn(16, 1, size, size)
        t.add(
            "inverse",
            "NS forward solve",
            f"{size}x{size}, T=1, dt=0.01 (100 steps)",
            timed(lambda ns=ns, w=w1: ns(w), repeats),
        )
        t.add(
            "inverse",
            "NS forward solve, batched",
            f"{size}x{size}, 16 fields",
            timed(lambda ns=ns, w=wb: ns(w), repeats),
            16,
        )
    from steerdiff.inverse import PriorConfig

    pc = PriorConfig()
    prior = Denoiser(
        build_network(
            "unet2d",
            in_channels=1,
            base_channels=pc.base_channels,
            channel_mults=pc.channel_mults,
            num_res_blocks=pc.num_res_blocks,
            attention_levels=(),
            mid_attention=False,
        ),
        "edm",
        sigma_data=1.0,
    )
    t.add(
        "inverse",
        "prior train step",
        f"UNet2D {pc.base_channels}ch 32x32, batch {pc.batch_size}",
        train_step_s(prior, (1, 32, 32), pc.batch_size, train_steps),
        pc.batch_size,
    )
    b = 16 if quick else 64
    for size in (32, 64):
        t.add(
            "inverse",
            "prior evaluation (no grad)",
            f"{size}x{size}, batch {b}",
            eval_item_s(prior.eval(), (1, size, size), b, repeats) * b,
            b,
        )

    # ---- timeseries: TSDiff's default S4D network, a forecast window's sampling step ----
    from steerdiff.timeseries import TSDiff, TSDiffConfig, forecast

    model = TSDiff(TSDiffConfig(context_length=168, prediction_length=24))
    spec = model.spec
    t.add(
        "timeseries",
        "train step",
        f"S4D 64ch x3, len {spec.length}, batch 64",
        train_step_s(model.denoiser, (1, spec.length), 64, train_steps),
        64,
    )
    history = 10 + torch.rand(1, spec.context_length)
    n_steps = 3 if quick else 5
    s = timed(
        lambda: forecast(model, history, num_samples=100, num_steps=n_steps, guidance="quantile"),
        max(1, repeats // 2),
    )
    t.add(
        "timeseries",
        "forecast step (self-guided)",
        "1 window x 100 paths",
        s / n_steps,
        100,
        note="TSDiff-Q: one denoiser forward + backward per step",
    )

    # ---- music: the piano-roll U-Net, a guided sample ----
    from steerdiff.music import ModelConfig as MusicConfig
    from steerdiff.music import RollConfig, build_denoiser, build_objective, generate

    roll = RollConfig(steps_per_beat=2)
    mden = build_denoiser(roll, MusicConfig())
    mshape = (2, roll.num_pitches, 32)
    t.add(
        "music",
        "train step",
        "UNet2D 16ch, 2x48x32 roll, batch 32",
        train_step_s(mden, mshape, 32, train_steps),
        32,
    )
    t.add(
        "music",
        "denoiser evaluation (no grad)",
        "batch 64",
        eval_item_s(mden.eval(), mshape, 64, repeats) * 64,
        64,
    )
    objective = build_objective(roll, 32, targets={"chord_progression": ["C", "G", "Am", "F"]})
    m_steps = 10 if quick else 20
    for method in ("scg", "smc"):
        gen = torch.Generator().manual_seed(0)
        s = timed(
            lambda method=method, gen=gen: generate(
                mden, roll, 1, 32, num_steps=m_steps, method=method, objective=objective, n=8, generator=gen
            ),
            max(1, repeats // 2),
        )
        t.add("music", f"guided sample: {method}, chords", f"{m_steps} DDPM steps, n=8", s)

    # ---- policy: trajectory U-Net (Hopper sizes), TD3+BC update ----
    from steerdiff.policy import ModelConfig as PolicyConfig
    from steerdiff.policy import make_agent

    pcfg = PolicyConfig()
    channels = 11 + 3 + 2  # Hopper: obs 11, action 3, reward, done
    tden = Denoiser(
        build_network(
            "unet1d",
            in_channels=channels,
            base_channels=pcfg.base_channels,
            channel_mults=pcfg.channel_mults,
            emb_dim=pcfg.emb_dim,
        ),
        "edm",
        sigma_data=1.0,
    )
    t.add(
        "policy",
        "train step",
        f"UNet1D {pcfg.base_channels}ch, {channels}x{pcfg.horizon}, batch {pcfg.batch_size}",
        train_step_s(tden, (channels, pcfg.horizon), pcfg.batch_size, train_steps),
        pcfg.batch_size,
    )
    for length in (32, 128):
        t.add(
            "policy",
            "denoiser evaluation (no grad)",
            f"{channels}x{length}, batch 64",
            eval_item_s(tden.eval(), (channels, length), 64, repeats) * 64,
            64,
        )
    agent = make_agent("td3bc", 11, 3)
    n = 256
    batch = {
        "obs": torch.randn(n, 11),
        "action": torch.rand(n, 3) * 2 - 1,
        "next_obs": torch.randn(n, 11),
        "reward": torch.randn(n),
        "done": torch.zeros(n),
    }
    t.add(
        "policy",
        "agent update (TD3+BC)",
        "256x2 MLP, batch 256",
        timed(lambda: agent.update(batch), 5 * repeats),
    )
    return t


def find(rows, domain, unit, size_prefix=""):
    for r in rows:
        if r["domain"] == domain and r["unit"] == unit and r["size"].startswith(size_prefix):
            return r
    raise KeyError((domain, unit, size_prefix))


def gpu_sampling_s(items: float, gflop_per_item: float, calls: float, flops: float = GPU_FLOPS) -> float:
    """GPU seconds of ``items`` no-grad evaluations made in ``calls`` calls: FLOPs or launch floor."""
    return max(items * gflop_per_item * 1e9 / flops, calls * CALL_FLOOR_S)


def project(rows, flop) -> dict:
    """Projections to the papers' scale from the measured rows and FLOP counts; every number is a projection."""
    hours = lambda s: s / 3600  # noqa: E731
    out = {}

    # EnKG on 128x128 Navier-Stokes with 2048 particles
    e = ENKG
    lo, hi = e["window"]
    guided = list(range(lo, hi + 1))
    batches = len(guided) * e["updates"]  # sequential forward-model batches
    solves = batches * e["particles"]
    ode = sum(min(1 + (e["steps"] - i) // e["ode_divisor"], e["ode_max"]) for i in guided) * e["updates"]
    calls = ode + e["steps"]  # sequential denoiser calls over the whole ensemble
    nfe = calls * e["particles"]
    ns32 = find(rows, "inverse", "NS forward solve, batched", "32x32")["ms_per_item"] / 1e3
    ns64 = find(rows, "inverse", "NS forward solve, batched", "64x64")["ms_per_item"] / 1e3
    ns128 = ns64 * NS_GROWTH_64_TO_128
    ev64 = find(rows, "inverse", "prior evaluation (no grad)", "64x64")["ms_per_item"] / 1e3
    ev128_here = ev64 * flop["enkg_paper_prior"] / flop["inverse_prior_64"]  # scaled by FLOPs
    cpu_ns, cpu_net = solves * ns128, nfe * ev128_here
    gpu_ns = cpu_ns / GPU_SPEEDUP_NS
    chunks = math.ceil(e["particles"] / ROWS_PER_CALL) * calls
    gpu_net = gpu_sampling_s(nfe, flop["enkg_paper_prior"], chunks)
    gpu_lo = cpu_ns / GPU_SPEEDUP_NS_RANGE[1] + gpu_sampling_s(
        nfe, flop["enkg_paper_prior"], chunks, GPU_FLOPS_RANGE[1]
    )
    gpu_hi = cpu_ns / GPU_SPEEDUP_NS_RANGE[0] + gpu_sampling_s(
        nfe, flop["enkg_paper_prior"], chunks, GPU_FLOPS_RANGE[0]
    )
    transfer = batches * (
        e["particles"] * (e["grid"] ** 2 + (e["grid"] // 2) ** 2) * 4 / NETWORK_BYTES_PER_S
        + SCHEDULER_S_PER_STEP
    )
    out["enkg_ns128"] = {
        "sequential_forward_batches": batches,
        "forward_solves": solves,
        "sequential_denoiser_calls": calls,
        "denoiser_evals": nfe,
        "prior_gflop_per_eval": flop["enkg_paper_prior"],
        "ns_solve_s_per_field_here": {"32": ns32, "64": ns64, "128 (projected)": ns128},
        "ns_growth_32_to_64_measured": ns64 / ns32,
        "cpu_1core_hours": {"forward": hours(cpu_ns), "denoiser": hours(cpu_net)},
        "one_gpu_hours": {
            "forward": hours(gpu_ns),
            "denoiser": hours(gpu_net),
            "total": hours(gpu_ns + gpu_net),
            "range": [hours(gpu_lo), hours(gpu_hi)],
        },
        "gpu_plus_n_cpu_workers_hours": {
            str(n): hours(cpu_ns / n + gpu_net + transfer) for n in (64, 256, 1024)
        },
        "n_gpu_workers_hours": {str(n): hours(gpu_ns / n + gpu_net + transfer) for n in (2, 4, 8)},
        "executor_overhead_hours": hours(transfer),
    }

    # PGD: a million agent updates and 100 synthetic sets of ~1 M transitions (our default U-Net)
    p = PGD
    upd = find(rows, "policy", "agent update (TD3+BC)")["ms"] / 1e3
    win128 = find(rows, "policy", "denoiser evaluation (no grad)", "16x128")["ms_per_item"] / 1e3
    windows = p["sets"] * math.ceil(p["transitions_per_set"] / (p["window"] - 1))
    synth_nfe = windows * (2 * p["sampler_steps"] - 1)  # Heun: 2 evaluations per step but the last
    guide = 1.5  # policy guidance: the agent's actor forward and backward on every window, each evaluation
    cpu_upd, cpu_syn = p["agent_updates"] * upd, synth_nfe * win128 * p["window"] / 128 * guide
    gpu_upd = p["agent_updates"] * AGENT_UPDATE_FLOOR_S
    syn_calls = math.ceil(windows / ROWS_PER_CALL) * (2 * p["sampler_steps"] - 1)
    gpu_syn = guide * gpu_sampling_s(synth_nfe, flop["policy_129"], syn_calls)
    out["pgd"] = {
        "agent_updates": p["agent_updates"],
        "synthetic_windows": windows,
        "synthesis_denoiser_evals": synth_nfe,
        "unet_gflop_per_window_eval": flop["policy_129"],
        "cpu_1core_hours": {"agent": hours(cpu_upd), "synthesis": hours(cpu_syn)},
        "one_gpu_hours": {
            "agent": hours(gpu_upd),
            "synthesis": hours(gpu_syn),
            "total": hours(gpu_upd + gpu_syn),
        },
        "n_gpu_workers_hours": {str(n): hours(gpu_upd + gpu_syn / n) for n in (2, 4, 8)},
        "note": "our default U-Net (base 32, 1.1M parameters); agent updates are sequential, synthetic sets shard",
    }

    # TSDiff: the paper's training length and 100 paths per window
    ts = TSDIFF
    step = find(rows, "timeseries", "train step")["ms"] / 1e3
    fstep = find(rows, "timeseries", "forecast step (self-guided)")["ms"] / 1e3  # 1 window x 100 paths
    cpu_train, cpu_fc = ts["train_steps"] * step, ts["windows"] * ts["sampler_steps"] * fstep
    gpu_train = ts["train_steps"] * max(TRAIN_STEP_FLOOR_S, 3 * 64 * flop["tsdiff"] * 1e9 / GPU_FLOPS)
    rows_fc = ts["windows"] * ts["paths"]
    fc_calls = math.ceil(rows_fc / ROWS_PER_CALL) * ts["sampler_steps"]
    gpu_fc = 3 * gpu_sampling_s(rows_fc * ts["sampler_steps"], flop["tsdiff"], fc_calls)
    out["tsdiff"] = {
        "train_steps": ts["train_steps"],
        "test_windows": ts["windows"],
        "s4d_gflop_per_window_eval": flop["tsdiff"],
        "cpu_1core_hours": {"train": hours(cpu_train), "forecast": hours(cpu_fc)},
        "one_gpu_hours": {
            "train": hours(gpu_train),
            "forecast": hours(gpu_fc),
            "total": hours(gpu_train + gpu_fc),
        },
        "n_gpu_workers_hours": {str(n): hours(gpu_train + gpu_fc / n) for n in (2, 4, 8)},
    }

    # SCG: n=16 candidates on 750 of 1000 DDPM steps, 100 samples
    s = SCG
    ev = find(rows, "music", "denoiser evaluation (no grad)")["ms_per_item"] / 1e3
    nfe_sample = (s["ddpm_steps"] - s["guided_steps"]) + s["guided_steps"] * s["candidates"]
    total = s["samples"] * nfe_sample
    scg_calls = s["ddpm_steps"]  # all samples and candidates in one call per step
    ours = gpu_sampling_s(total, flop["music"], scg_calls)
    paper = gpu_sampling_s(total, PAPER_SCG_GFLOP, scg_calls)
    out["scg"] = {
        "denoiser_evals_per_sample": nfe_sample,
        "samples": s["samples"],
        "gflop_per_eval": {"ours": flop["music"], "paper DiT-XL": PAPER_SCG_GFLOP},
        "cpu_1core_hours": hours(total * ev),
        "one_gpu_hours": {"ours": hours(ours), "paper DiT-XL": hours(paper)},
        "n_gpu_workers_hours": {
            str(n): {"ours": hours(ours / n), "paper DiT-XL": hours(paper / n)} for n in (2, 4, 8)
        },
    }
    out["assumptions"] = {
        "gpu_flops": GPU_FLOPS,
        "gpu_flops_range": GPU_FLOPS_RANGE,
        "call_floor_s": CALL_FLOOR_S,
        "train_step_floor_s": TRAIN_STEP_FLOOR_S,
        "agent_update_floor_s": AGENT_UPDATE_FLOOR_S,
        "rows_per_call": ROWS_PER_CALL,
        "gpu_speedup_ns": GPU_SPEEDUP_NS,
        "gpu_speedup_ns_range": GPU_SPEEDUP_NS_RANGE,
        "ns_growth_64_to_128": NS_GROWTH_64_TO_128,
        "network_bytes_per_s": NETWORK_BYTES_PER_S,
        "scheduler_s_per_step": SCHEDULER_S_PER_STEP,
        "paper_enkg_prior": PAPER_ENKG_PRIOR,
        "paper_scg_gflop": PAPER_SCG_GFLOP,
        "enkg": ENKG,
        "pgd": PGD,
        "tsdiff": TSDIFF,
        "scg": SCG,
    }
    return out


def flop_counts() -> dict:
    """GFLOP per item of one forward of each network the projections need."""
    from steerdiff.inverse import PriorConfig
    from steerdiff.policy import ModelConfig as PolicyConfig

    pc, pol = PriorConfig(), PolicyConfig()
    prior = dict(
        in_channels=1,
        base_channels=pc.base_channels,
        channel_mults=pc.channel_mults,
        num_res_blocks=pc.num_res_blocks,
        attention_levels=(),
        mid_attention=False,
    )
    unet1d = dict(in_channels=16, base_channels=pol.base_channels, channel_mults=pol.channel_mults)
    music = dict(
        in_channels=2, base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=()
    )
    out = {
        "inverse_prior_64": gflop("unet2d", (1, 64, 64), **prior),
        "enkg_paper_prior": gflop("unet2d", (1, 128, 128), **PAPER_ENKG_PRIOR),
        "policy_129": gflop("unet1d", (16, 129), **unet1d),
        "music": gflop("unet2d", (2, 48, 32), **{**music, "mid_attention": False}),
    }
    from steerdiff.timeseries import TSDiff, TSDiffConfig

    model = TSDiff(TSDiffConfig(context_length=168, prediction_length=24))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.denoiser.net(torch.randn(1, 1, model.spec.length), torch.ones(1))
    out["tsdiff"] = counter.get_total_flops() / 1e9
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats and smaller loops: under a minute")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per unit (default 3 quick, 7 full)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--json", default="benchmarks/results/cost_model.json", help="where to write the results")
    a = p.parse_args(argv)
    set_threads(a.threads)
    torch.manual_seed(0)
    repeats = a.repeats or (3 if a.quick else 7)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    table = measure(a.quick, repeats)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()
    flop = flop_counts()
    proj = project(table.rows, flop)
    print(
        "\nPROJECTIONS (arithmetic on the rows above and the assumptions in docs/costs.md; not measurements)"
    )
    e, g, ts, s = proj["enkg_ns128"], proj["pgd"], proj["tsdiff"], proj["scg"]
    print(
        f"  EnKG 128x128, 2048 particles: {e['forward_solves']} NS solves, {e['denoiser_evals']} denoiser evals; "
        f"1 GPU ~{e['one_gpu_hours']['total']:.2f} h per field "
        f"(range {e['one_gpu_hours']['range'][0]:.2f}-{e['one_gpu_hours']['range'][1]:.2f} h); "
        f"CPU 1 core {e['cpu_1core_hours']['forward'] + e['cpu_1core_hours']['denoiser']:.0f} h"
    )
    print(
        f"  PGD: 1M agent updates + {g['synthetic_windows']} synthetic windows: 1 GPU ~{g['one_gpu_hours']['total']:.1f} h"
    )
    print(
        f"  TSDiff: {ts['train_steps']} train steps + {ts['test_windows']} windows x 100 paths: "
        f"1 GPU ~{ts['one_gpu_hours']['total']:.2f} h"
    )
    print(
        f"  SCG: {s['samples']} samples x {s['denoiser_evals_per_sample']} evals: 1 GPU "
        f"~{s['one_gpu_hours']['ours']:.3f} h (our U-Net), ~{s['one_gpu_hours']['paper DiT-XL']:.2f} h (DiT-XL)"
    )
    result = {
        "command": "python benchmarks/cost_model.py" + (" --quick" if a.quick else ""),
        "quick": a.quick,
        "repeats": repeats,
        "threads": a.threads,
        "wall_s": wall,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "units": table.rows,
        "gflop_per_item": flop,
        "projections": proj,
    }
    write_json(a.json, result)
    print(
        f"\n{wall:.0f} s; load average {load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} cores; "
        f"wrote {a.json}"
    )


if __name__ == "__main__":
    main()
