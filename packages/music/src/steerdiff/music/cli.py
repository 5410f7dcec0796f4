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
import math
from pathlib import Path

from steerdiff.core.command import (
    UsageError,
    add_command_presets,
    add_runtime_flags,
    add_sampling_flags,
    existing_file,
    make_parser,
    nonnegative_int,
    positive_float,
    positive_int,
    probability,
    run_command,
    subcommands,
)
from steerdiff.core.sharding import shard_options

from .data import SOURCES, load_split, prepare_data, save_split, windows
from .demo import run_demo
from .guide import DEFAULTS, METHODS
from .pipeline import (
    MusicPipeline,
    build_objective,
    draw_reference,
    evaluate_samples,
    load_samples,
    normalise_histogram,
    read_targets,
    targets_from_midi,
)
from .presets import PRESETS
from .roll import RollConfig
from .rules import RULES, get_rule

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


def _numbers(text: str) -> list[float]:
    """Comma-separated finite numbers."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of finite numbers")
    return values


def _window(text: str) -> tuple[float, float]:
    """START,STOP fractions of the sampler steps with 0 <= START < STOP <= 1."""
    values = _numbers(text)
    if len(values) != 2 or not 0 <= values[0] < values[1] <= 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not START,STOP with 0 <= START < STOP <= 1 (fractions of the sampler steps)"
        )
    return values[0], values[1]


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


def _flag_targets(a, length: int, roll: RollConfig) -> dict:
    """Targets given on the command line (--chords, --pitch-histogram, --density), one for every sample."""
    out = _targets(a)
    if getattr(a, "pitch_histogram", None) is not None:
        out["pitch_histogram"] = normalise_histogram(
            get_rule("pitch_histogram", roll).check_target(a.pitch_histogram, length)
        )
    if getattr(a, "density", None) is not None:
        bars = length // roll.steps_per_bar
        values = list(a.density)
        if len(values) == 2:
            values = [values[0]] * bars + [values[1]] * bars
        if len(values) != 2 * bars:
            raise UsageError(
                f"--density takes 2 numbers (sounding notes per step, steps with a note start per bar; the "
                f"same for every bar) or {2 * bars} (the first for each of the {bars} bars, then the second), "
                f"got {len(values)}"
            )
        out["note_density"] = values
    return out


def _generate_targets(a, pipe: MusicPipeline, length: int):
    """(rule names, targets, reference rolls) of a generate run: targets from the JSON file and flags first,
    then from --like MIDI files, then from held-out windows of the model's data."""
    names = [r.strip() for r in a.rules.split(",") if r.strip()] if a.rules else []
    unknown = [r for r in names if r not in RULES]
    if unknown:
        raise UsageError(f"unknown rule(s) {unknown}; choose from {sorted(RULES)} (--rules)")
    targets = _flag_targets(a, length, pipe.roll)
    if a.targets is not None:
        from_file = read_targets(a.targets, pipe.roll, length, a.num_samples)
        twice = sorted(set(from_file) & set(targets))
        if twice:
            raise UsageError(
                f"{twice} get targets from both {a.targets} and a flag; give each rule's target once"
            )
        targets.update(from_file)
    if a.like and not names and not a.targets:
        names = sorted(RULES)  # a reference piece gives every rule's target
    names += [r for r in targets if r not in names]
    if a.method not in (None, "unguided") and not names:
        raise UsageError(
            f"--method {a.method} steers toward rules, but none were given; add --rules (with targets from "
            f"--like, --targets, --chords or the held-out data), or use --method unguided"
        )
    need = [r for r in names if r not in targets]
    reference, source = None, {r: "flag or targets file" for r in targets}
    if need and a.like:
        like = targets_from_midi(a.like, pipe.roll, length)
        if like.shape[0] not in (1, a.num_samples):
            raise UsageError(
                f"--like gives {like.shape[0]} reference pieces for {a.num_samples} samples; give one piece "
                f"for every sample or one per sample (--num-samples {like.shape[0]})"
            )
        reference = like.expand(a.num_samples, *like.shape[1:]) if like.shape[0] == 1 else like
        source.update({r: "reference MIDI (--like)" for r in need})
    elif need:
        reference = draw_reference(_held_out(_data_folder(a, pipe), pipe.roll, length), a.num_samples, a.seed)
        source.update({r: "held-out windows of the training data" for r in need})
    return names, targets, reference, source


def cmd_generate(a) -> dict:
    pipe = MusicPipeline.from_pretrained(a.model, device=a.device)
    length = (a.bars or pipe.bars) * pipe.roll.steps_per_bar
    names, targets, reference, source = _generate_targets(a, pipe, length)
    gen = pipe.generate(
        rules=names,
        targets=targets,
        method=a.method,
        num_samples=a.num_samples,
        steps=a.steps,
        n=a.candidates,
        reference=reference,
        bars=a.bars,
        seed=a.seed,
        window=a.window,
        lam=a.lam,
        dps_scale=a.dps_scale,
        beams=a.beams,
        selection=a.selection,
        temperature=a.temperature,
        solver=a.solver,
        progress=not a.quiet,
        **shard_options(Path(a.out) / "generate", a.chunk_size),
    )
    if gen is None:
        return None  # another torchrun rank: rank 0 writes the pieces
    gen.save(a.out, tempo=a.tempo, wav=a.wav)
    if gen.rule_losses and not a.json:
        for record in gen.per_sample():
            losses = "  ".join(f"{k} {v:.4g}" for k, v in record["loss"].items())
            print(f"{record['midi']}: rule loss {losses}")
    summary = {**gen.summary(), "model": str(a.model), "samples": str(Path(a.out) / "samples.npz")}
    if gen.targets:
        summary["targets_from"] = {r: source.get(r, "") for r in gen.targets}
        summary["targets"] = str(Path(a.out) / "targets.json")
    return summary


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
        "--chunk-size",
        type=positive_int,
        default=None,
        help="generate in resumable chunks of this many pieces, kept in <out>/generate/shards and shared out "
        "over the processes of a torchrun launch (the pieces do not depend on their number); default: one "
        "batch, or chunks of 16 under torchrun",
    )
    sp.add_argument(
        "--model", type=Path, default=Path("runs/music/train/model"), help="a model bundle folder"
    )
    rule_flags(
        sp,
        "a folder prepare wrote, for targets from its held-out pieces (default: the data the model "
        "was trained on)",
    )
    sp.add_argument(
        "--like",
        type=existing_file,
        nargs="+",
        default=None,
        metavar="MIDI",
        help="reference MIDI file(s): targets (pitch histogram, note density, chords of its first bars) taken "
        "from the piece, one file for every sample or one per sample; with no --rules, all three rules",
    )
    sp.add_argument(
        "--targets",
        type=existing_file,
        default=None,
        metavar="JSON",
        help='a JSON file of targets: one object {"rule": target} for every sample, or a list of one per '
        "sample; pitch_histogram: 12 weights C..B, note_density: 2 x bars numbers, chord_progression: one "
        "chord per bar",
    )
    sp.add_argument(
        "--pitch-histogram",
        type=_numbers,
        default=None,
        metavar="W,...",
        help="pitch-class target: 12 weights for C, C#, ..., B (normalised to sum 1); adds the rule",
    )
    sp.add_argument(
        "--density",
        type=_numbers,
        default=None,
        metavar="V,H",
        help="note-density target per bar: sounding notes per step and steps with a note start (2 numbers "
        "for every bar, or 2 x bars); adds the note_density rule",
    )
    sp.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help="how to steer toward the rules (default: scg with rules, unguided without)",
    )
    sp.add_argument(
        "--candidates",
        type=positive_int,
        default=8,
        help="candidates per step (scg), particles (smc), samples per output (best_of_n), children per beam "
        "(tree_search)",
    )
    sp.add_argument("--beams", type=positive_int, default=2, help="tree_search: beams kept per sample")
    sp.add_argument(
        "--selection",
        choices=("top", "sample"),
        default="top",
        help="tree_search: keep the best children, or draw them by softmax(reward / temperature)",
    )
    sp.add_argument(
        "--temperature", type=positive_float, default=1.0, help="tree_search with --selection sample"
    )
    sp.add_argument(
        "--lam",
        type=positive_float,
        default=None,
        help="smc strength (inverse temperature on the reward; default per rule, chosen on validation "
        "chorales: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULTS["lam"].items()) + ")",
    )
    sp.add_argument(
        "--dps-scale",
        type=positive_float,
        default=None,
        help=f"dps step size (default {DEFAULTS['dps_scale']:g}, chosen on validation chorales)",
    )
    sp.add_argument(
        "--window",
        type=_window,
        default=None,
        metavar="START,STOP",
        help="guided steps as fractions of the sampler steps (default: "
        + ", ".join(f"{m} {w[0]:g},{w[1]:g}" for m, w in DEFAULTS["window"].items())
        + "; chosen on validation chorales)",
    )
    add_sampling_flags(sp, num_samples=8, steps=50, solver="ddpm", samples_help="pieces to generate")
    sp.add_argument(
        "--bars", type=positive_int, default=None, help="length in bars (default: the model's window)"
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
    add_command_presets(p, PRESETS)  # --preset paper / gpu-check / smoke (presets.py)
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
