"""``steerdiff-music``: prepare -> train -> generate -> evaluate, and a one-command demo.

    steerdiff-music prepare  --source chorales --num-pieces 60 --out runs/music/data
    steerdiff-music train    --data runs/music/data --train-steps 2000 --out runs/music/train
    steerdiff-music generate --model runs/music/train/model --rules chord_progression,note_density \\
                             --method scg --candidates 8 --num-samples 8 --out runs/music/generated --wav
    steerdiff-music evaluate --samples runs/music/generated/samples.npz --data runs/music/data --out
    runs/music/eval steerdiff-music demo     --out runs/music/demo

``train`` writes the model bundle to ``<out>/model`` and a resumable training checkpoint to
``<out>/checkpoint``. Targets come from held-out (validation) windows of the data the model was trained on,
one per generated sample, unless given by hand (``--chords I,V,vi,IV``: key-relative Roman numerals;
``--chords C,G,Am,F``: absolute triads). Every command writes summary.json into ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from steerdiff.core.command import (
    add_runtime_flags,
    add_sampling_flags,
    make_parser,
    nonnegative_int,
    positive_float,
    positive_int,
    probability,
    run_command,
    subcommands,
)

from .data import SOURCES, load_split, prepare_data, save_split, windows
from .demo import run_demo
from .guide import METHODS
from .pipeline import MusicPipeline, build_objective, draw_reference, evaluate_samples, load_samples
from .roll import RollConfig
from .rules import RULES

__all__ = ["build_parser", "main"]

PROG = "steerdiff-music"


def _one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Usage errors as one line on stderr, exit code 2."""

    def error(message: str):
        parser.exit(2, f"{parser.prog}: error: {message}; see {parser.prog} --help\n")

    parser.error = error  # type: ignore[method-assign]
    return parser


def _fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    try:
        value = probability(text)
    except argparse.ArgumentTypeError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number strictly between 0 and 1")
    return value


def _fraction_or_one(text: str) -> float:
    """A number in (0, 1]."""
    try:
        value = probability(text)
    except argparse.ArgumentTypeError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in (0, 1]")
    return value


# ---------------------------------------------------------------------------------------------- commands


def cmd_prepare(a) -> dict:
    cfg = RollConfig(steps_per_beat=a.steps_per_beat, pitch_low=a.pitch_low, num_pitches=a.num_pitches)
    train, val = prepare_data(
        a.source, cfg, a.num_pieces, a.folder, a.val_fraction, a.seed, progress=not a.quiet
    )
    save_split(a.out, train, val)
    return {
        "source": a.source,
        "pieces": len(train) + len(val),
        "train_pieces": len(train),
        "val_pieces": len(val),
        "roll": cfg.to_dict(),
        "steps": int(sum(r.shape[-1] for r in train.rolls + val.rolls)),
        "data": str(a.out),
    }


def cmd_train(a) -> dict:
    train, val = load_split(a.data)
    info = {
        "folder": str(Path(a.data).resolve()),
        "train_pieces": len(train),
        "val_pieces": len(val),
        "val_names": val.names,
    }
    # cut the windows now, so a dataset that does not fit fails before any training
    windows(train, a.bars * train.config.steps_per_bar)
    pipe = MusicPipeline.train(
        train,
        bars=a.bars,
        transpose=a.transpose,
        train_steps=a.train_steps,
        batch_size=a.batch_size,
        lr=a.lr,
        channels=a.channels,
        seed=a.seed,
        checkpoint_dir=a.out,
        device=a.device,
        progress=not a.quiet,
        data_info=info,
    )
    model = pipe.save_pretrained(Path(a.out) / "model")
    t = pipe.info["training"]
    return {
        "model": str(model),
        "windows": pipe.info["data"]["windows"],
        "train_steps": t["steps"],
        "resumed_from": t["resumed_from"],
        "final_loss": t["final_loss"],
        "seconds": t["seconds"],
    }


def _data_folder(a, pipe: MusicPipeline | None = None) -> Path:
    if a.data is not None:
        return Path(a.data)
    folder = pipe.info.get("data", {}).get("folder") if pipe is not None else None
    if not folder:
        raise ValueError(
            "no --data folder given and the model does not record the data it was trained on; give "
            "--data, a folder prepare wrote"
        )
    return Path(folder)


def _held_out(folder: Path, roll: RollConfig, length: int):
    val = load_split(folder, "val")
    if val.config != roll:
        raise ValueError(
            f"the data in {folder} has roll layout {val.config.to_dict()}, but the model (or samples) "
            f"use {roll.to_dict()}; prepare data with the same --steps-per-beat, --pitch-low and "
            f"--num-pitches"
        )
    return windows(val, length)


def _targets(a) -> dict:
    return {"chord_progression": a.chords} if a.chords else {}


def cmd_generate(a) -> dict:
    pipe = MusicPipeline.from_pretrained(a.model, device=a.device)
    length = (a.bars or pipe.bars) * pipe.roll.steps_per_bar
    # check the rules and hand-given targets before reading data or sampling
    names = [r for r in a.rules.split(",") if r] if a.rules else []
    unknown = [r for r in names if r not in RULES]
    if unknown:
        raise ValueError(f"unknown rule(s) {unknown}; choose from {sorted(RULES)} (--rules)")
    reference = None
    needs_reference = [r for r in names if r not in _targets(a)]
    if needs_reference:
        reference = draw_reference(_held_out(_data_folder(a, pipe), pipe.roll, length), a.num_samples, a.seed)
    gen = pipe.generate(
        rules=names,
        targets=_targets(a),
        method=a.method,
        num_samples=a.num_samples,
        steps=a.steps,
        n=a.candidates,
        reference=reference,
        bars=a.bars,
        seed=a.seed,
        guide_fraction=a.guide_fraction,
        solver=a.solver,
        progress=not a.quiet,
    )
    gen.save(a.out, tempo=a.tempo, wav=a.wav)
    return {**gen.summary(), "model": str(a.model), "samples": str(Path(a.out) / "samples.npz")}


def cmd_evaluate(a) -> dict:
    x, cfg = load_samples(a.samples)
    folder = _data_folder(a)
    real = _held_out(folder, cfg, x.shape[-1])
    obj = None
    if a.rules or a.chords:
        names = [r for r in (a.rules or "").split(",") if r]
        reference = (
            draw_reference(real, x.shape[0], a.seed) if [r for r in names if r not in _targets(a)] else None
        )
        obj = build_objective(cfg, x.shape[-1], names, _targets(a), reference)
    return evaluate_samples(x, real, cfg, obj)


def cmd_demo(a) -> dict:
    return run_demo(
        a.out,
        a.run,
        a.num_pieces,
        a.train_steps,
        a.num_samples,
        a.steps,
        a.candidates,
        a.seed,
        a.device,
        a.wav,
        progress=not a.quiet,
    )


HANDLERS = {
    "prepare": cmd_prepare,
    "train": cmd_train,
    "generate": cmd_generate,
    "evaluate": cmd_evaluate,
    "demo": cmd_demo,
}


# ------------------------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    """The ``steerdiff-music`` parser: prepare, train, generate, evaluate, demo."""
    p = _one_line_errors(make_parser(PROG, __doc__.split("\n")[0].strip("`: "), "steerdiff-music"))
    p.description = "Rule-guided symbolic music: prepare data, train, generate, evaluate, or run the demo."
    add = subcommands(p)

    def rule_flags(sp, data_help: str, data_default=None):
        sp.add_argument("--data", type=Path, default=data_default, help=data_help)
        sp.add_argument(
            "--rules",
            default=None,
            help=f"comma-separated rules to steer toward, from {', '.join(sorted(RULES))} (default: none)",
        )
        sp.add_argument(
            "--chords",
            default=None,
            help="chord target per bar: Roman numerals I,V,vi,IV (key-relative) or chord names C,G,Am,F "
            "(absolute triads); adds the chord_progression rule (default: targets from held-out "
            "windows)",
        )

    sp = _one_line_errors(
        add("prepare", "a MIDI folder, Bach chorales or synthetic pieces -> train/val piano rolls")
    )
    sp.add_argument("--source", choices=SOURCES, default="chorales", help="where the pieces come from")
    sp.add_argument("--folder", type=Path, default=None, help="with --source folder: a folder of .mid files")
    sp.add_argument(
        "--num-pieces",
        type=positive_int,
        default=None,
        help="how many pieces (chorales: the first N in corpus order; default: all, synthetic: 32)",
    )
    sp.add_argument("--steps-per-beat", type=positive_int, default=2, help="grid steps per quarter note")
    sp.add_argument("--pitch-low", type=nonnegative_int, default=36, help="lowest MIDI pitch of the roll")
    sp.add_argument("--num-pitches", type=positive_int, default=48, help="pitch rows of the roll")
    sp.add_argument(
        "--val-fraction", type=_fraction, default=0.15, help="share of pieces held out for validation"
    )
    add_runtime_flags(sp, out="runs/music/data")

    sp = _one_line_errors(add("train", "train the piano-roll U-Net; writes a model bundle to <out>/model"))
    sp.add_argument("--data", type=Path, default=Path("runs/music/data"), help="a folder prepare wrote")
    sp.add_argument("--bars", type=positive_int, default=4, help="window length in bars")
    sp.add_argument("--transpose", type=nonnegative_int, default=3, help="augment by -k..k semitones")
    sp.add_argument("--train-steps", type=positive_int, default=2000, help="training steps (rerun to resume)")
    sp.add_argument("--batch-size", type=positive_int, default=32, help="windows per training step")
    sp.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate")
    sp.add_argument("--channels", type=positive_int, default=16, help="U-Net base channels (a multiple of 8)")
    add_runtime_flags(sp, out="runs/music/train")

    sp = _one_line_errors(add("generate", "sample pieces, optionally rule-guided; MIDI, PNG and samples.npz"))
    sp.add_argument(
        "--model", type=Path, default=Path("runs/music/train/model"), help="a model bundle folder"
    )
    rule_flags(
        sp,
        "a folder prepare wrote, for targets from its held-out pieces (default: the data the model "
        "was trained on)",
    )
    sp.add_argument("--method", choices=METHODS, default="scg", help="how to steer toward the rules")
    sp.add_argument(
        "--candidates",
        type=positive_int,
        default=8,
        help="candidates per step (scg), particles (smc) or samples per output (best_of_n)",
    )
    add_sampling_flags(sp, num_samples=8, steps=50, solver="ddpm", samples_help="pieces to generate")
    sp.add_argument(
        "--bars", type=positive_int, default=None, help="length in bars (default: the model's window)"
    )
    sp.add_argument(
        "--guide-fraction",
        type=_fraction_or_one,
        default=0.75,
        help="scg/smc steer the last fraction of the sampler steps",
    )
    sp.add_argument(
        "--tempo", type=positive_float, default=100.0, help="tempo of the MIDI files (beats per minute)"
    )
    sp.add_argument("--wav", action="store_true", help="also write a sine-synth WAV preview per piece")
    add_runtime_flags(sp, out="runs/music/generated")

    sp = _one_line_errors(add("evaluate", "OA of generated pieces against held-out pieces (and rule losses)"))
    sp.add_argument("--samples", type=Path, required=True, help="samples.npz written by generate")
    rule_flags(sp, "a folder prepare wrote; its held-out pieces are the reference", Path("runs/music/data"))
    add_runtime_flags(sp, out="runs/music/eval")

    sp = _one_line_errors(
        add("demo", "chorales -> small model -> unguided vs SCG pieces, in minutes on a CPU")
    )
    sp.add_argument(
        "--run",
        type=Path,
        default=None,
        help="the data + model folder to train, resume or reuse (default: a folder under "
        "$STEERDIFF_CACHE/music)",
    )
    sp.add_argument("--num-pieces", type=positive_int, default=60, help="Bach chorales to train and test on")
    sp.add_argument("--train-steps", type=positive_int, default=1500, help="training steps of the demo model")
    sp.add_argument("--candidates", type=positive_int, default=8, help="SCG candidates per step")
    add_sampling_flags(sp, num_samples=4, steps=30, solver=None, samples_help="pieces per method")
    sp.add_argument("--wav", action="store_true", help="also write a sine-synth WAV preview per piece")
    add_runtime_flags(sp, out="runs/music/demo")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``steerdiff-music``; returns the exit code (0, or 2 for a user error: one line on stderr)."""
    try:
        return run_command(build_parser(), HANDLERS, argv)
    except SystemExit as exit_:  # a usage error (its one line already printed), --help or --version
        if exit_.code in (0, None):
            raise
        return exit_.code if isinstance(exit_.code, int) else 2


if __name__ == "__main__":
    raise SystemExit(main())
