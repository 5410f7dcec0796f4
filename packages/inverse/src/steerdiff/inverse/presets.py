"""Named scales of ``steerdiff-inverse`` (``--preset``): the EnKG paper's, the GPU check's and a smoke test's.

    steerdiff-inverse make-data   --preset gpu-check --out runs/ns64
    steerdiff-inverse train-prior --preset gpu-check --data runs/ns64 --out runs/ns64/prior
    steerdiff-inverse solve       --preset gpu-check --data runs/ns64 --prior runs/ns64/prior --method enkg

A preset sets option defaults only; options given on the command line still win.
"""

from __future__ import annotations

from steerdiff.core.command import Preset

__all__ = ["PRESETS"]

# Sources of the paper's numbers (devzhk/enkg-pytorch, the EnKG paper's code):
# configs/problem/navier-stokes.yaml  -- 128x128 vorticity, Re 200, forward_time 1.0, downsample_factor 2,
#                                        sigma_noise 0.0; test fields id_list 0-9 (10 fields)
# data (InverseBench's Re200.0-t5.0 set)  -- 20,480 training fields
# time step: the paper's code steps adaptively (CFL); InverseBench's non-adaptive config uses dt 2e-3, which this
#     package's fixed-step solver needs at 128x128 (dt 1e-2 blows up there)
# configs/pretrain/navier-stokes.yaml -- UNet model_channels 128, batch_size 256, num_steps 100_000, lr 1e-4
# configs/algorithm/enkg.yaml         -- num_samples 2048, num_steps 80, num_updates 2, guidance_scale 2.0,
#                                        threshold_start / threshold_end 0.05
# configs/algorithm/eki.yaml          -- num_updates (iterations) 500, num_samples 512
ENKG = "devzhk/enkg-pytorch configs/problem/navier-stokes.yaml"
PAPER = "the EnKG paper's Navier-Stokes scale (a long GPU run, see docs/costs.md; not a check)"
GPU = "the GPU check (scripts/gpu_check.sh; its time budget on one H200: 120 s)"
SMOKE = "tiny sizes for gpu_check.sh --dry-run: checks that the command runs end to end on a CPU in seconds"

PRESETS: dict[str, dict[str, Preset]] = {
    "make-data": {
        "paper": Preset(
            f"{PAPER}: 128x128 fields at Re 200 (time step 2e-3) observed at T=1 every 2nd point, 20480 training and "
            "10 test fields",
            {
                "--problem": "navier_stokes",
                "--size": 128,
                "--dt": 2e-3,
                "--reynolds": 200.0,
                "--horizon": 1.0,
                "--downsample": 2,
                "--noise": 0.0,
                "--num-train": 20480,
                "--num-test": 10,
            },
            source=f"{ENKG}; 20,480 training fields of the Re200.0-t5.0 data; dt 2e-3 as InverseBench's non-adaptive config",
        ),
        "gpu-check": Preset(
            f"{GPU}: 64x64 fields, 2048 training and 2 test fields simulated in one batch on the GPU",
            {"--problem": "navier_stokes", "--size": 64, "--num-train": 2048, "--num-test": 2},
            source="sized for the check's 120 s budget (docs/costs.md)",
        ),
        "smoke": Preset(
            SMOKE,
            {"--problem": "navier_stokes", "--size": 16, "--num-train": 16, "--num-test": 2},
            source="smallest",
        ),
    },
    "train-prior": {
        "paper": Preset(
            f"{PAPER}: a 128-channel U-Net prior, 100000 steps at batch 256, lr 1e-4",
            {"--channels": 128, "--train-steps": 100_000, "--batch-size": 256, "--lr": 1e-4},
            source="devzhk/enkg-pytorch configs/pretrain/navier-stokes.yaml",
        ),
        "gpu-check": Preset(
            f"{GPU}: a 32-channel U-Net prior trained 2000 steps at batch 64; records the final loss and time",
            {"--channels": 32, "--train-steps": 2000, "--batch-size": 64},
            source="sized for the check's 120 s budget (docs/costs.md)",
        ),
        "smoke": Preset(SMOKE, {"--channels": 8, "--train-steps": 2, "--batch-size": 4}, source="smallest"),
    },
    "solve": {
        "paper": Preset(
            f"{PAPER}: EnKG with 2048 particles, 80 steps, 2 updates per guided step, scale 2, guided on the "
            "steps 5 to 95 percent, 10 test fields; EKI 500 iterations (the paper's EKI: add --num-samples 512)",
            {
                "--num-samples": 2048,
                "--steps": 80,
                "--updates": 2,
                "--scale": 2.0,
                "--window": (0.05, 0.95),
                "--iterations": 500,
                "--num-fields": 10,
            },
            source="devzhk/enkg-pytorch configs/algorithm/enkg.yaml and eki.yaml",
        ),
        "gpu-check": Preset(
            f"{GPU}: 512 particles, 30 steps (EnKG) or 100 iterations (EKI) on 2 test fields; records relative "
            "L2, forward-model calls and time",
            {"--num-samples": 512, "--steps": 30, "--iterations": 100, "--num-fields": 2},
            source="the issue's EnKG vs EKI at 64x64 with 512 particles; sized for 120 s (docs/costs.md)",
        ),
        "smoke": Preset(
            SMOKE, {"--num-samples": 4, "--steps": 4, "--iterations": 2, "--num-fields": 2}, source="smallest"
        ),
    },
}
