"""``python -m steerdiff.music.train_prior``: a prior trained on every Bach chorale, chosen on validation.

Trains candidates (U-Net widths) on every chorale with transposition to all keys, in stages (resumable: run the
same command again to continue), measures each stage on the validation chorales (denoising loss, voice realism
and OA of unguided samples; ``steerdiff.music.prior``), keeps the best as a model bundle (``<run>/model``) and
measures it on the test chorales. ``--measure DIR`` measures any model bundle on the test chorales::

    python -m steerdiff.music.train_prior --channels 16 --stages 1000,1500,2000
    python -m steerdiff.music.train_prior --measure ~/.cache/steerdiff/music/prior_all_chorales/model
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from steerdiff.core.io import write_json
from steerdiff.core.runtime import configure

from .data import windows
from .demo import DEMO_BARS, DEMO_ROLL
from .metrics import oa_table, voice_realism
from .pipeline import MusicPipeline, trained_steps
from .prior import _choose, measure_prior, prior_run_dir, prior_splits
from .roll import RollConfig

__all__ = ["main"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m steerdiff.music.train_prior",
        description="Train piano-roll priors on every Bach chorale in stages, measure each on the validation "
        "chorales (denoising loss, voice realism, OA of unguided samples) and keep the best; or measure one "
        "model bundle (--measure).",
    )
    p.add_argument("--run", type=Path, default=None, help="run folder (default: the cache's prior folder)")
    p.add_argument("--channels", default="16", help="comma-separated U-Net widths to train (default: 16)")
    p.add_argument(
        "--stages",
        default="2000,4000,6000,8000",
        help="training steps after which each candidate is measured",
    )
    p.add_argument("--transpose", type=int, default=6, help="augment by -k..k semitones (6: every key)")
    p.add_argument("--batch-size", type=int, default=32, help="windows per training step")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--samples", type=int, default=64, help="unguided samples measured per model")
    p.add_argument(
        "--measure", type=Path, default=None, help="only measure this model bundle on the test set"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--json", type=Path, default=None, help="where to write the measurements")
    a = p.parse_args(argv)
    configure("cpu", a.threads, a.seed)
    length = DEMO_BARS * RollConfig(**DEMO_ROLL).steps_per_bar
    train, val, test = prior_splits(progress=False)
    if a.measure is not None:
        pipe = MusicPipeline.from_pretrained(a.measure, device="cpu")
        real = windows(test, length)
        res = measure_prior(pipe, real, a.samples, seed=a.seed)
        res.update(model=str(a.measure), train_steps=trained_steps(a.measure), real="test windows")
        res["real_train_windows"] = _real_reference(train, real, length, a.samples, a.seed)
        _print(str(a.measure), res)
        _print("real training windows", res["real_train_windows"])
        if a.json:
            write_json(a.json, res)
        return 0
    run = Path(a.run or prior_run_dir())
    val_windows = windows(val, length)
    log_path = a.json or run / "stages.json"
    stages: list[dict] = []
    done = {}  # stages measured by an earlier run of the command (resumed): not measured again
    if Path(log_path).is_file():
        done = {
            (s["channels"], s["train_steps"]): s for s in json.loads(Path(log_path).read_text())["stages"]
        }
    for ch in [int(c) for c in a.channels.split(",")]:
        for steps in [int(s) for s in a.stages.split(",")]:
            bundle = run / f"ch{ch}" / f"model_{steps}"
            if (ch, steps) in done and trained_steps(bundle) >= steps:
                stages.append(done[(ch, steps)])
                _print(f"ch{ch} {steps} steps (measured before)", done[(ch, steps)])
                continue
            if trained_steps(bundle) < steps:
                pipe = MusicPipeline.train(
                    train,
                    bars=DEMO_BARS,
                    transpose=a.transpose,
                    train_steps=steps,
                    batch_size=a.batch_size,
                    lr=a.lr,
                    channels=ch,
                    seed=a.seed,
                    checkpoint_dir=run / f"ch{ch}",
                    device="cpu",
                    progress=False,
                    data_info={"source": "chorales", "train_pieces": len(train), "val_names": val.names},
                )
                pipe.save_pretrained(bundle)
            pipe = MusicPipeline.from_pretrained(bundle, device="cpu")
            res = measure_prior(pipe, val_windows, a.samples, seed=a.seed, val_windows=val_windows)
            res.update(channels=ch, train_steps=steps, model=str(bundle), real="validation windows")
            _print(f"ch{ch} {steps} steps", res)
            stages.append(res)
            write_json(log_path, {"stages": stages})
    best = _choose(stages)
    chosen = MusicPipeline.from_pretrained(best["model"], device="cpu")
    chosen.save_pretrained(run / "model")
    test_res = measure_prior(chosen, windows(test, length), a.samples, seed=a.seed)
    test_res.update(model=str(run / "model"), chosen=best["model"], real="test windows")
    _print("chosen, on the test windows", test_res)
    write_json(log_path, {"stages": stages, "chosen": best["model"], "test": test_res})
    return 0


def _real_reference(train, real, length: int, num: int, seed: int) -> dict:
    """Voice realism and OA of ``num`` real training windows against the test windows: what a perfect prior
    would score."""
    w = windows(train, length)
    pick = w[torch.randperm(w.shape[0], generator=torch.Generator().manual_seed(seed))[:num]]
    return {"voices": voice_realism(pick, real, train.config), "oa": oa_table(pick, real, train.config)}


def _print(name: str, r: dict) -> None:
    v = r["voices"]
    loss = f"val loss {r['val_loss']:.4f}  " if "val_loss" in r else ""
    print(
        f"{name}: {loss}{v['typical_voices']} voices on {v['generated']['typical']:.1%} of steps "
        f"(more on {v['generated']['more']:.1%}; real {v['real']['typical']:.1%}), note length "
        f"{v['generated']['note_length']:.2f} (real {v['real']['note_length']:.2f}), OA {r['oa']['mean']:.3f}",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
