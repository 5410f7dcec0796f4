"""Named scales of ``steerdiff-timeseries`` (``--preset``): TSDiff's paper setting, the GPU check's and a smoke
test's.

    steerdiff-timeseries train    --preset gpu-check --data elecdemand --out runs/ts
    steerdiff-timeseries forecast --preset gpu-check --model runs/ts/model --out runs/ts/forecast

A preset sets option defaults only; options given on the command line still win.
"""

from __future__ import annotations

from steerdiff.core.command import Preset

__all__ = ["PRESETS"]

# Sources of the paper's numbers (amazon-science/unconditional-time-series-diffusion, TSDiff's code):
# configs/train_tsdiff/train_electricity.yaml -- diffusion_small_config, normalization mean, context_length 336,
#     prediction_length 24, lr 1e-3, init_skip False, max_epochs 1000 x num_batches_per_epoch 128 = 128,000
#     steps, batch_size 64, guidance quantile at scale 4
# src/uncond_ts_diff/configs.py -- diffusion_small_config: hidden_dim 64, 3 residual blocks, timesteps 100
# src/uncond_ts_diff/arch/backbones.py -- S4 layers with d_state 128
# configs/guidance/guidance_electricity.yaml -- num_samples 100, sampler ddpm, guidance quantile, scale 4
# electricity_nips's test split has 7 rolling windows per series.
TSDIFF = "amazon-science/unconditional-time-series-diffusion configs/train_tsdiff/train_electricity.yaml"
PAPER = "TSDiff's paper setting (a long GPU run, see docs/costs.md; not a check)"
GPU = "the GPU check (scripts/gpu_check.sh; its time budget on one H200: 110 s)"
SMOKE = "tiny sizes for gpu_check.sh --dry-run: checks that the command runs end to end on a CPU in seconds"

PRESETS: dict[str, dict[str, Preset]] = {
    "train": {
        "paper": Preset(
            f"{PAPER}: the small S4 backbone (64 channels, 3 blocks, state 128) on 336 + 24 point windows with "
            "mean scaling, 128000 steps at batch 64, lr 1e-3, no input skip, quantile guidance at scale 4 (no "
            "tuning), 7 test windows",
            {
                "--hidden": 64,
                "--blocks": 3,
                "--d-state": 128,
                "--context": 336,
                "--prediction": 24,
                "--scaling": "mean",
                "--init-skip": False,
                "--train-steps": 128_000,
                "--batch-size": 64,
                "--lr": 1e-3,
                "--tune-budget": 0,
                "--test-windows": 7,
                "--steps": 100,
            },
            source=f"{TSDIFF}; src/uncond_ts_diff/configs.py (diffusion_small_config)",
        ),
        "gpu-check": Preset(
            f"{GPU}: the paper's backbone (64 channels, 3 blocks, state 128) on the paper's 336 + 24 point windows "
            "with mean scaling, 4000 training steps, then the guidance scale chosen on validation windows with 8 "
            "forecasts per guidance; records loss and time",
            {
                "--hidden": 64,
                "--blocks": 3,
                "--d-state": 128,
                "--context": 336,
                "--prediction": 24,
                "--scaling": "mean",
                "--train-steps": 4000,
                "--tune-budget": 8,
            },
            source="sized for the check's 110 s budget (docs/costs.md: training is launch-bound on a GPU)",
        ),
        "smoke": Preset(
            SMOKE,
            {
                "--train-steps": 4,
                "--hidden": 8,
                "--blocks": 1,
                "--d-state": 8,
                "--context": 48,
                "--prediction": 12,
                "--scaling": "mean",
                "--tune-budget": 0,
                "--test-windows": 1,
                "--validation-windows": 0,
                "--steps": 3,
            },
            source="smallest",
        ),
    },
    "forecast": {
        "paper": Preset(
            f"{PAPER}: TSDiff-Q, 100 sample paths x 100 DDPM steps per window, quantile self-guidance at scale 4",
            {
                "--num-samples": 100,
                "--steps": 100,
                "--solver": "ddpm",
                "--guidance": "quantile",
                "--scale": 4.0,
            },
            source="amazon-science/unconditional-time-series-diffusion configs/guidance/guidance_electricity.yaml",
        ),
        "gpu-check": Preset(
            f"{GPU}: TSDiff-Q with 100 sample paths x 100 DDPM steps per test window; records CRPS and time",
            {"--num-samples": 100, "--steps": 100, "--solver": "ddpm", "--guidance": "quantile"},
            source="the paper's sampling budget (configs/guidance/guidance_electricity.yaml)",
        ),
        "smoke": Preset(SMOKE, {"--num-samples": 2, "--steps": 3}, source="smallest"),
    },
}
