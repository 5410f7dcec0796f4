"""``steerdiff-music``: prepare -> train -> generate -> evaluate, and a one-command demo.

    steerdiff-music prepare  --source chorales --num-pieces 60 --out runs/data
    steerdiff-music train    --data runs/data --steps 2000 --out runs/model
    steerdiff-music generate --model runs/model --data runs/data --rules chord_progression,note_density \
                             --method scg --n 8 --out runs/gen --wav
    steerdiff-music evaluate --samples runs/gen/samples.npz --data runs/data --out runs/eval
    steerdiff-music demo     --out runs/demo

``demo`` keeps its prepared chorales and trained model in a cache run (``demo_run_dir()``, under
``$STEERDIFF_CACHE``): training checkpoints as it goes and resumes where it stopped, and a finished model is
reused by later demos and by ``benchmarks/music_scg.py``.

Targets come from held-out (validation) windows, one per generated sample, unless given by hand
(``--chords I,V,vi,IV``: key-relative Roman numerals, the paper's rule; ``--chords C,G,Am,F``: absolute
triads). Every command writes a JSON summary into ``--out``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .data import (
    bach_chorales,
    default_cache_dir,
    load_midi_folder,
    load_pieces,
    save_pieces,
    split,
    synthetic_pieces,
    windows,
)
from .guide import METHODS, generate
from .metrics import oa_table
from .model import ModelConfig, load_model, train_model
from .plot import plot_rolls
from .roll import RollConfig, atomic_write_bytes, roll_to_midi, save_midi, save_wav
from .rules import RULES, Objective, chord_index, degree_index, get_rule

DEMO_ROLL = dict(steps_per_beat=2, pitch_low=36, num_pitches=48)
DEMO_BARS = 4
WEIGHTS = {"pitch_histogram": 40.0, "note_density": 1.0, "chord_progression": 1.0}  # the paper's multi-rule weights


def demo_run_dir(num_pieces: int = 60, seed: int = 0) -> Path:
    """Where ``demo`` keeps its chorale data (``data/``) and model (``model/``) for these settings."""
    return default_cache_dir() / f"demo_chorales{num_pieces}_seed{seed}"


def model_is_trained(model_dir, steps: int) -> bool:
    """True when ``model_dir`` holds a finished run of at least ``steps`` training steps."""
    path = Path(model_dir) / "train_summary.json"
    return (Path(model_dir) / "music.json").is_file() and path.is_file() and \
        json.loads(path.read_text()).get("steps", 0) >= steps


def _write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())
    print(f"wrote {path}")


def _device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def _save_tensor(path: Path, x: torch.Tensor, config: RollConfig) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x.cpu().numpy(), config=np.array(json.dumps(config.to_dict())))
    atomic_write_bytes(path, buf.getvalue())


def _load_tensor(path) -> tuple[torch.Tensor, RollConfig]:
    with np.load(path, allow_pickle=False) as z:
        return torch.from_numpy(z["x"]), RollConfig(**json.loads(str(z["config"])))


# ------------------------------------------------------------------------------------------------ commands

def cmd_prepare(a) -> dict:
    cfg = RollConfig(steps_per_beat=a.steps_per_beat, pitch_low=a.pitch_low, num_pitches=a.num_pitches)
    if a.source == "chorales":
        pieces = bach_chorales(cfg, num_pieces=a.num_pieces)
    elif a.source == "synthetic":
        pieces = synthetic_pieces(cfg, a.num_pieces or 32, seed=a.seed)
    else:
        if not a.folder:
            sys.exit("--source folder needs --folder PATH (a folder of .mid files)")
        pieces = load_midi_folder(a.folder, cfg, skip_bad=True)
    train, val = split(pieces, a.val_fraction, a.seed)
    out = Path(a.out)
    save_pieces(out / "train.npz", train)
    save_pieces(out / "val.npz", val)
    summary = {"source": a.source, "pieces": len(pieces), "train_pieces": len(train), "val_pieces": len(val),
               "roll": cfg.to_dict(), "steps": int(sum(r.shape[-1] for r in pieces.rolls))}
    _write_json(out / "summary.json", summary)
    return summary


def _windows(data_dir, split_name: str, bars: int, transpose=(0,)) -> tuple[torch.Tensor, RollConfig]:
    pieces = load_pieces(Path(data_dir) / f"{split_name}.npz")
    return windows(pieces, bars * pieces.config.steps_per_bar, transpose=transpose), pieces.config


def cmd_train(a) -> dict:
    from steerdiff.core.training import TrainConfig

    torch.manual_seed(a.seed)
    data, cfg = _windows(a.data, "train", a.bars, range(-a.transpose, a.transpose + 1))
    print(f"training on {data.shape[0]} windows of shape {tuple(data.shape[1:])}")
    t0 = time.time()
    res = train_model(data, cfg, a.out, ModelConfig(base_channels=a.channels),
                      TrainConfig(steps=a.steps, batch_size=min(a.batch_size, data.shape[0]), lr=a.lr, seed=a.seed,
                                  checkpoint_every=max(1, min(100, a.steps // 5)), ema_decay=0.99),
                      device=a.device)
    if res.resumed_from:
        print(f"resumed from step {res.resumed_from} (checkpoint in {a.out})")
    summary = {"windows": int(data.shape[0]), "steps": res.step, "resumed_from": res.resumed_from,
               "final_loss": float(np.mean(res.losses[-50:])), "seconds": round(time.time() - t0, 1)}
    _write_json(Path(a.out) / "train_summary.json", summary)
    return summary


def _objective(a, cfg: RollConfig, length: int, num: int) -> Objective | None:
    names = [r for r in a.rules.split(",") if r] if a.rules else []
    if a.chords and "chord_progression" not in names:
        names.append("chord_progression")
    unknown = [r for r in names if r not in RULES]
    if unknown:
        sys.exit(f"unknown rule(s) {unknown}; choose from {sorted(RULES)}")
    if not names:
        return None
    ref, _ = _windows(a.data, "val", length // cfg.steps_per_bar)
    g = torch.Generator().manual_seed(a.seed + 1)
    ref = ref[torch.randint(ref.shape[0], (num,), generator=g)]
    terms = []
    for name in names:
        rule = get_rule(name, cfg)
        if name == "chord_progression" and a.chords:
            chords = a.chords.split(",")
            try:  # Roman numerals or degrees: the paper's key-relative rule; chord names: absolute triads
                target = torch.tensor(degree_index(chords), dtype=torch.float32)
            except ValueError:
                rule = get_rule(name, cfg, mode="absolute")
                target = torch.tensor(chord_index(chords), dtype=torch.float32)
        else:
            target = rule.attribute(ref)
        terms.append((rule, target, WEIGHTS[name] if len(names) > 1 else 1.0))
    return Objective(terms, length)


def _write_pieces(x, cfg, out: Path, titles, wav: bool, tempo: float = 100.0):
    from .roll import MidiInfo

    for i in range(x.shape[0]):
        pm = roll_to_midi(x[i].cpu(), cfg, MidiInfo(tempo=tempo, name=f"sample_{i}"), model_space=True)
        save_midi(pm, out / f"sample_{i:02d}.mid")
        if wav:
            save_wav(pm, out / f"sample_{i:02d}.wav")
    plot_rolls(x, cfg, out / "pianoroll.png", titles)


def cmd_generate(a) -> dict:
    device = _device(a.device)
    den, cfg, length = load_model(a.model, device=device)
    length = a.bars * cfg.steps_per_bar if a.bars else length
    obj = _objective(a, cfg, length, a.num_samples)
    method = a.method if obj is not None else "unguided"
    t0 = time.time()
    res = generate(den, cfg, a.num_samples, length, a.steps, method, obj, n=a.n,
                   generator=torch.Generator(device).manual_seed(a.seed), device=device, progress=True)
    out = Path(a.out)
    _save_tensor(out / "samples.npz", res.x, cfg)
    losses = {k: v.tolist() for k, v in obj.losses(res.x).items()} if obj else {}
    titles = [f"#{i} " + " ".join(f"{k[:5]}={v[i]:.3g}" for k, v in losses.items()) for i in range(a.num_samples)]
    _write_pieces(res.x, cfg, out, titles, a.wav)
    summary = {"method": method, "n": a.n, "steps": a.steps, "rules": obj.names if obj else [],
               "rule_loss": {k: float(np.mean(v)) for k, v in losses.items()}, "costs": res.costs.as_dict(),
               "seconds": round(time.time() - t0, 2)}
    _write_json(out / "summary.json", summary)
    return summary


def cmd_evaluate(a) -> dict:
    x, cfg = _load_tensor(a.samples)
    real, _ = _windows(a.data, "val", x.shape[-1] // cfg.steps_per_bar)
    summary = {"oa": oa_table(x, real, cfg), "num_samples": int(x.shape[0]), "num_real": int(real.shape[0])}
    if a.rules or a.chords:
        obj = _objective(a, cfg, x.shape[-1], x.shape[0])
        summary["rule_loss"] = {k: float(v.mean()) for k, v in obj.losses(x).items()}
    _write_json(Path(a.out) / "evaluation.json", summary)
    for k, v in summary["oa"].items():
        print(f"OA {k:>14}: {v:.3f}")
    return summary


def ensure_demo_model(run, num_pieces: int = 60, train_steps: int = 1500, seed: int = 0,
                      device="auto") -> tuple[Path, Path]:
    """(model dir, data dir) of the demo run in ``run``: chorales prepared once, the model trained once —
    resumed from its last checkpoint if an earlier run stopped, reused when finished."""
    run = Path(run)
    data, model = run / "data", run / "model"
    if not (data / "train.npz").is_file():
        cmd_prepare(argparse.Namespace(source="chorales", folder=None, num_pieces=num_pieces,
                                       val_fraction=0.15, seed=seed, out=data, **DEMO_ROLL))
    if model_is_trained(model, train_steps):
        print(f"reusing the trained model in {model}")
    else:
        print(f"training the demo model in {model} (resumable: rerun the same command to continue)")
        cmd_train(argparse.Namespace(data=data, bars=DEMO_BARS, transpose=3, seed=seed, out=model, channels=16,
                                     steps=train_steps, batch_size=32, lr=1e-3, device=device))
    return model, data


def cmd_demo(a) -> dict:
    """Chorales -> small model (trained, resumed or reused from the cache run) -> unguided vs SCG pieces with
    held-out targets: MIDI, piano-roll PNG and JSON per method, and a side-by-side summary."""
    out = Path(a.out)
    run = Path(a.run) if a.run else demo_run_dir(a.num_pieces, a.seed)
    model, data = ensure_demo_model(run, a.num_pieces, a.train_steps, a.seed, a.device)
    results = {"run": str(run)}
    real, _ = _windows(data, "val", DEMO_BARS)
    for method in ("unguided", "scg"):
        ns = argparse.Namespace(model=model, data=data, bars=None, rules="chord_progression,note_density",
                                chords=None, method=method, n=a.n, num_samples=a.num_samples, steps=a.steps,
                                seed=a.seed, device=a.device, out=out / method, wav=a.wav)
        results[method] = cmd_generate(ns)
        x, cfg = _load_tensor(out / method / "samples.npz")
        results[method]["oa_mean"] = oa_table(x, real, cfg)["mean"]
    _write_json(out / "demo_summary.json", results)
    for m in ("unguided", "scg"):
        r = results[m]
        losses = "  ".join(f"{k} {v:.3f}" for k, v in r["rule_loss"].items())
        print(f"{m:>9}: rule loss {losses}  OA {r['oa_mean']:.3f}  NFE/sample {r['costs']['nfe']:.0f}  "
              f"({r['seconds']:.1f} s)")
    return results


# ----------------------------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="steerdiff-music", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, out_default):
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--device", default="auto", help="auto | cpu | cuda")
        sp.add_argument("--out", default=out_default)
        sp.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")

    sp = sub.add_parser("prepare", help="MIDI folder or Bach chorales -> train/val piano rolls")
    sp.add_argument("--source", choices=("chorales", "folder", "synthetic"), default="chorales")
    sp.add_argument("--folder")
    sp.add_argument("--num-pieces", type=int, default=None, help="chorales: the first N (default all)")
    sp.add_argument("--steps-per-beat", type=int, default=2)
    sp.add_argument("--pitch-low", type=int, default=36)
    sp.add_argument("--num-pitches", type=int, default=48)
    sp.add_argument("--val-fraction", type=float, default=0.15)
    common(sp, "runs/music/data")

    sp = sub.add_parser("train", help="train the piano-roll U-Net")
    sp.add_argument("--data", default="runs/music/data")
    sp.add_argument("--bars", type=int, default=4, help="window length in bars")
    sp.add_argument("--transpose", type=int, default=3, help="augment by -k..k semitones")
    sp.add_argument("--steps", type=int, default=2000)
    sp.add_argument("--batch-size", type=int, default=32)
    sp.add_argument("--lr", type=float, default=1e-3)
    sp.add_argument("--channels", type=int, default=16)
    common(sp, "runs/music/model")

    def rule_args(sp):
        sp.add_argument("--data", default="runs/music/data", help="prepared data (targets from its val split)")
        sp.add_argument("--rules", default="", help=f"comma-separated, from {sorted(RULES)}")
        sp.add_argument("--chords", default=None, help="chord target per bar: Roman numerals I,V,vi,IV (key-relative, as in the paper) "
                        "or chord names C,G,Am,F (absolute triads); else from val pieces")

    sp = sub.add_parser("generate", help="sample pieces, optionally rule-guided; MIDI + PNG (+ WAV)")
    sp.add_argument("--model", default="runs/music/model")
    rule_args(sp)
    sp.add_argument("--method", choices=METHODS, default="scg")
    sp.add_argument("--n", type=int, default=8, help="candidates (SCG), particles (SMC), samples (best-of-n)")
    sp.add_argument("--num-samples", type=int, default=8)
    sp.add_argument("--steps", type=int, default=50)
    sp.add_argument("--bars", type=int, default=None)
    sp.add_argument("--wav", action="store_true", help="also write a sine-synth WAV preview per piece")
    common(sp, "runs/music/generated")

    sp = sub.add_parser("evaluate", help="OA against held-out pieces (+ rule loss)")
    sp.add_argument("--samples", required=True, help="samples.npz written by generate")
    rule_args(sp)
    common(sp, "runs/music/eval")

    sp = sub.add_parser("demo", help="chorales -> small model -> unguided vs SCG pieces, in minutes on CPU")
    sp.add_argument("--run", default=None, help="the data + model run to train/resume/reuse (default: a cache "
                                                 "folder under $STEERDIFF_CACHE, see demo_run_dir)")
    sp.add_argument("--num-pieces", type=int, default=60)
    sp.add_argument("--train-steps", type=int, default=1500)
    sp.add_argument("--num-samples", type=int, default=4)
    sp.add_argument("--steps", type=int, default=30)
    sp.add_argument("--n", type=int, default=8)
    sp.add_argument("--wav", action="store_true")
    common(sp, "runs/music/demo")
    return p


def main(argv=None) -> None:
    a = build_parser().parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    {"prepare": cmd_prepare, "train": cmd_train, "generate": cmd_generate, "evaluate": cmd_evaluate,
     "demo": cmd_demo}[a.command](a)


if __name__ == "__main__":
    main()
