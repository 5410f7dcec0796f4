"""Named scales of ``steerdiff-policy`` (``--preset``): policy-guided diffusion's paper setting, the GPU check's
and a smoke test's.

    steerdiff-policy collect     --preset gpu-check --out runs/hopper
    steerdiff-policy train       --preset gpu-check --data runs/hopper/data.hdf5 --out runs/hopper/train
    steerdiff-policy train-agent --preset gpu-check --data runs/hopper/data.hdf5 --model runs/hopper/train/model \\
        --out runs/hopper/agent

A preset sets option defaults only; options given on the command line still win.
"""

from __future__ import annotations

from steerdiff.core.command import Preset

__all__ = ["PRESETS"]

# Sources of the paper's numbers (EmptyJackson/policy-guided-diffusion, the paper's code, util/args.py):
# parse_diffusion_args -- batch_size 32, trajectory_length 32, dataset_stride 8, num_features 1024 (U-Net width),
#     lr 2e-3, num_epochs 10,000 full passes over the windows (5 % of episodes held out for validation)
# parse_agent_args -- num_train_steps 1,000,000, batch_size 256, synth_batch_size 240 of 256 (93.75 % synthetic),
#     synth_dataset_lifetime 10,000 (regenerate every 10k updates), num_synth_workers 32 x num_synth_rollouts 256
#     = 8192 synthetic trajectories of num_rollout_steps 128 (+1 rows); parse_diffusion_args: diffusion_timesteps
#     256 (EDM's Heun sampler)
# The D4RL MuJoCo datasets it trains on (hopper-medium-v2) hold 1,000,000 transitions.
PGD = "EmptyJackson/policy-guided-diffusion util/args.py"
D4RL_TRANSITIONS = 1_000_000
# 10,000 epochs over stride-8 windows of the 95 % training episodes at batch 32 (about 37 M updates)
PAPER_DIFFUSION_STEPS = 10_000 * int(D4RL_TRANSITIONS * 0.95 / 8 / 32)
PAPER = "policy-guided diffusion's paper setting (a long GPU run, see docs/costs.md; not a check)"
GPU = "the GPU check (scripts/gpu_check.sh; its time budget on one H200: 70 s)"
SMOKE = "tiny sizes for gpu_check.sh --dry-run: checks that the command runs end to end on a CPU in seconds"

PRESETS: dict[str, dict[str, Preset]] = {
    "collect": {
        "paper": Preset(
            f"{PAPER}: a D4RL-sized Hopper dataset of 1000000 transitions",
            {"--env": "Hopper-v5", "--transitions": D4RL_TRANSITIONS},
            source="D4RL hopper-medium-v2's size (1M transitions), the paper's tasks",
        ),
        "gpu-check": Preset(
            f"{GPU}: 50000 Hopper-v5 transitions (collected on the CPU, headless MuJoCo)",
            {"--env": "Hopper-v5", "--transitions": 50_000},
            source="sized for the check's 70 s budget (docs/costs.md)",
        ),
        "smoke": Preset(SMOKE, {"--env": "Pendulum-v1", "--transitions": 400}, source="smallest"),
    },
    "train": {
        "paper": Preset(
            f"{PAPER}: the trajectory model on 32-row windows at stride 8, U-Net width 1024, batch 32, lr 2e-3, "
            "about 37 M updates (the code's 10000 epochs over a 1 M-transition dataset)",
            {
                "--horizon": 32,
                "--stride": 8,
                "--base-channels": 1024,
                "--batch-size": 32,
                "--lr": 2e-3,
                "--train-steps": PAPER_DIFFUSION_STEPS,
            },
            source=f"{PGD} (parse_diffusion_args)",
        ),
        "gpu-check": Preset(
            f"{GPU}: the trajectory model (U-Net width 64) trained 3000 updates on the GPU; records loss and time",
            {"--base-channels": 64, "--train-steps": 3000},
            source="sized for the check's 70 s budget (docs/costs.md)",
        ),
        "smoke": Preset(SMOKE, {"--base-channels": 8, "--train-steps": 2}, source="smallest"),
    },
    "train-agent": {
        "paper": Preset(
            f"{PAPER}: 1 M agent updates at batch 256, 93.75 percent synthetic (240 of 256), 8192 guided "
            "129-row trajectories per synthetic set from 256 Heun steps, regenerated every 10000 updates",
            {
                "--train-steps": 1_000_000,
                "--batch-size": 256,
                "--synth-ratio": 0.9375,
                "--regenerate-every": 10_000,
                "--num-samples": 8192,
                "--length": 129,
                "--steps": 256,
                "--solver": "heun",
            },
            source=f"{PGD} (parse_agent_args; diffusion_timesteps 256)",
        ),
        "gpu-check": Preset(
            f"{GPU}: TD3+BC, 6000 updates with 50 percent policy-guided synthetic data (256 windows x 32 steps, "
            "regenerated every 2000 updates), evaluated every 3000 on 5 episodes; records returns and time",
            {
                "--agent": "td3bc",
                "--train-steps": 6000,
                "--synth-ratio": 0.5,
                "--regenerate-every": 2000,
                "--num-samples": 256,
                "--steps": 32,
                "--eval-every": 3000,
                "--eval-episodes": 5,
            },
            source="sized for the check's 70 s budget (docs/costs.md)",
        ),
        "smoke": Preset(
            SMOKE,
            {
                "--agent": "td3bc",
                "--train-steps": 8,
                "--synth-ratio": 0.5,
                "--regenerate-every": 4,
                "--num-samples": 2,
                "--steps": 3,
                "--eval-every": 8,
                "--eval-episodes": 1,
            },
            source="smallest",
        ),
    },
}
