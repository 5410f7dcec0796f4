"""Named scales of ``steerdiff-music`` (``--preset``): the rule-guided music paper's sampling and training
budget, the GPU check's and a smoke test's.

    steerdiff-music prepare  --preset gpu-check --out runs/chords/data
    steerdiff-music train    --preset gpu-check --data runs/chords/data --out runs/chords/train
    steerdiff-music generate --preset gpu-check --model runs/chords/train/model --rules chord_progression \\
        --method scg --out runs/chords/scg

A preset sets option defaults only; options given on the command line still win. ``prepare`` has no paper
preset: the paper's data (MAESTRO, MuseScore and pop piano performances) does not ship here.
"""

from __future__ import annotations

from steerdiff.core.command import Preset

__all__ = ["PRESETS"]

# Sources of the paper's numbers (yjhuangcd/rule-guided-music, the SCG paper's code):
# scripts/configs/cond_table/all/scg.yml -- scg num_samples 16 (candidates per step), DDPM (use_ddim False) on
#     the model's 1000 steps, guidance for t_start 750 .. t_end 0: the last 75 % of the steps
# README.md "Train diffusion model" -- batch_size 32 on each of 8 GPUs (effective 256); the released checkpoint
#     is ema_0.9999_1200000.pt (1.2 M steps). Its network (a DiT-XL on VAE latents) is not ours: the paper
#     preset carries the budget over to this package's U-Net.
SCG = "yjhuangcd/rule-guided-music scripts/configs/cond_table/all/scg.yml"
PAPER = "the rule-guided music paper's budget (a long GPU run, see docs/costs.md; not a check)"
GPU = "the GPU check (scripts/gpu_check.sh; its time budget on one H200: 100 s)"
SMOKE = "tiny sizes for gpu_check.sh --dry-run: checks that the command runs end to end on a CPU in seconds"

PRESETS: dict[str, dict[str, Preset]] = {
    "prepare": {
        "gpu-check": Preset(
            f"{GPU}: the first 60 Bach chorales of music21's corpus (converted once, then cached)",
            {"--source": "chorales", "--num-pieces": 60},
            source="the demo's chorales (steerdiff-music demo)",
        ),
        "smoke": Preset(
            f"{SMOKE} (synthetic pieces: no corpus to parse)",
            {"--source": "synthetic", "--num-pieces": 16},
            source="smallest",
        ),
    },
    "train": {
        "paper": Preset(
            f"{PAPER}: 1.2 M training steps at batch 256",
            {"--train-steps": 1_200_000, "--batch-size": 256},
            source="yjhuangcd/rule-guided-music README.md (8 GPUs x batch 32; checkpoint ema_0.9999_1200000.pt)",
        ),
        "gpu-check": Preset(
            f"{GPU}: a larger prior than the default (U-Net width 32) trained 3000 steps at batch 64 on the GPU; "
            "records loss and time",
            {"--channels": 32, "--train-steps": 3000, "--batch-size": 64},
            source="sized for the check's budget (docs/costs.md)",
        ),
        "smoke": Preset(SMOKE, {"--channels": 8, "--train-steps": 2, "--batch-size": 4}, source="smallest"),
    },
    "generate": {
        "paper": Preset(
            f"{PAPER}: 16 candidates per step, 1000 DDPM steps, guided on the last 75 percent of them",
            {"--candidates": 16, "--steps": 1000, "--solver": "ddpm", "--window": "0.25,1"},
            source=f"{SCG} (scg num_samples 16, t_start 750 of 1000)",
        ),
        "gpu-check": Preset(
            f"{GPU}: 32 pieces from 50 DDPM steps with 16 candidates (SCG), particles (SMC) or children (tree "
            "search) per step; records rule losses and time",
            {"--candidates": 16, "--num-samples": 32, "--steps": 50, "--solver": "ddpm"},
            source=f"the paper's 16 candidates ({SCG}); sized for the check's budget",
        ),
        "smoke": Preset(SMOKE, {"--candidates": 2, "--num-samples": 2, "--steps": 4}, source="smallest"),
    },
}
