"""The demo run: Bach chorales -> a small U-Net -> unguided and SCG pieces, in minutes on a CPU.

The prepared chorales (``data/``), the training checkpoint (``train/``) and the trained model bundle
(``model/``) live in a cache run (:func:`demo_run_dir`, under ``$STEERDIFF_CACHE``): training keeps a
checkpoint and resumes where it was interrupted, and a finished model is reused by later demos and by the
benchmark (``steerdiff.music.benchmark``).
"""

from __future__ import annotations

from pathlib import Path

from steerdiff.core.io import write_json
from steerdiff.core.runtime import cache_dir

from .data import load_split, prepare_data, save_split, windows
from .pipeline import MusicPipeline, draw_reference, evaluate_samples, trained_steps
from .roll import RollConfig

__all__ = ["DEMO_BARS", "DEMO_ROLL", "DEMO_RULES", "demo_run_dir", "ensure_demo_model", "run_demo"]

DEMO_ROLL = {"steps_per_beat": 2, "pitch_low": 36, "num_pitches": 48}
DEMO_BARS = 4
DEMO_RULES = "chord_progression,note_density"


def demo_run_dir(num_pieces: int = 60, seed: int = 0) -> Path:
    """Where the demo keeps its chorale data (``data/``) and model (``model/``) for these settings."""
    return cache_dir("music", f"demo_chorales{num_pieces}_seed{seed}")


def ensure_demo_model(
    run, num_pieces: int = 60, train_steps: int = 1500, seed: int = 0, device="auto", progress: bool = True
) -> tuple[MusicPipeline, Path]:
    """(pipeline, data folder) of the demo run in ``run``: chorales prepared once, the model trained once —
    resumed from its last checkpoint if a run was interrupted, reused when it has ``train_steps`` steps."""
    run = Path(run)
    data, model = run / "data", run / "model"
    if not (data / "train.npz").is_file() or not (data / "val.npz").is_file():
        train, val = prepare_data(
            "chorales", RollConfig(**DEMO_ROLL), num_pieces, val_fraction=0.15, seed=seed, progress=progress
        )
        save_split(data, train, val)
    if trained_steps(model) >= train_steps:
        return MusicPipeline.from_pretrained(model, device=device), data
    train, val = load_split(data)
    info = {
        "source": "chorales",
        "folder": str(data),
        "train_pieces": len(train),
        "val_pieces": len(val),
        "val_names": val.names,
    }
    pipe = MusicPipeline.train(
        train,
        bars=DEMO_BARS,
        transpose=3,
        train_steps=train_steps,
        batch_size=32,
        lr=1e-3,
        channels=16,
        seed=seed,
        checkpoint_dir=run / "train",
        device=device,
        progress=progress,
        data_info=info,
    )
    pipe.save_pretrained(model)
    return pipe, data


def run_demo(
    out,
    run=None,
    num_pieces: int = 60,
    train_steps: int = 1500,
    num_samples: int = 4,
    steps: int = 30,
    n: int = 8,
    seed: int = 0,
    device="auto",
    wav: bool = False,
    progress: bool = True,
) -> dict:
    """Chorales -> small model (trained, resumed or reused from the cache run) -> unguided and SCG pieces with
    chord and note-density targets from held-out windows: MIDI, piano-roll PNG and a summary per method in
    ``out/<method>``; returns the side-by-side summary."""
    out = Path(out)
    run = Path(run) if run else demo_run_dir(num_pieces, seed)
    pipe, data = ensure_demo_model(run, num_pieces, train_steps, seed, device, progress)
    real = windows(load_split(data, "val"), pipe.length)
    reference = draw_reference(real, num_samples, seed)
    results: dict = {"run": str(run), "model": str(run / "model")}
    for method in ("unguided", "scg"):
        gen = pipe.generate(
            rules=DEMO_RULES,
            method=method,
            num_samples=num_samples,
            steps=steps,
            n=n,
            reference=reference,
            seed=seed,
            progress=progress,
        )
        gen.save(out / method, wav=wav)
        summary = gen.summary()
        summary["oa_mean"] = evaluate_samples(gen.x.cpu(), real, pipe.roll)["oa"]["mean"]
        write_json(out / method / "summary.json", summary)
        results[method] = summary
    return results
