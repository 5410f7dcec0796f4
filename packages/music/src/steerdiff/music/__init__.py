"""steerdiff-music: symbolic music with rule guidance.

Piano rolls on a beat grid with MIDI in and out, Bach chorales or any MIDI folder as data, a small 2-D U-Net,
and rules without gradients (chords, note density, pitch histogram, your own function) that steer generation
at sampling time with stochastic control guidance (SCG), SMC, best-of-n or DPS::

    from steerdiff.music import MusicPipeline

    pipe = MusicPipeline.from_pretrained("runs/music/train/model")
    out = pipe.generate(rules="chord_progression", targets={"chord_progression": "I,V,vi,IV"}, method="scg")
    out.save("runs/music/generated")
"""

from importlib import metadata as _metadata

from .data import (
    Pieces,
    bach_chorales,
    load_midi_folder,
    load_pieces,
    load_split,
    prepare_data,
    save_pieces,
    save_split,
    split,
    synthetic_pieces,
    windows,
)
from .demo import demo_run_dir, ensure_demo_model, run_demo
from .guide import DEFAULTS, METHODS, bars_mask, check_window, generate
from .metrics import ATTRIBUTES, attributes, oa_table, overlapping_area, voice_counts, voice_realism
from .model import (
    EmpiricalDenoiser,
    ModelConfig,
    MusicModel,
    build_denoiser,
    load_model,
    save_model,
    train_model,
)
from .pipeline import (
    WEIGHTS,
    Generation,
    MusicPipeline,
    build_objective,
    draw_reference,
    evaluate_samples,
    load_samples,
    normalise_histogram,
    read_targets,
    save_samples,
    targets_from_midi,
    trained_steps,
)
from .plot import plot_rolls
from .prior import measure_prior, prior_splits, validation_loss
from .roll import (
    MidiError,
    MidiInfo,
    Notes,
    RollConfig,
    from_model,
    midi_to_roll,
    note_masks,
    notes_to_roll,
    roll_to_midi,
    roll_to_notes,
    save_midi,
    save_wav,
    to_model,
)
from .rules import (
    CHORD_NAMES,
    RULES,
    ChordProgression,
    CustomRule,
    NoteDensity,
    Objective,
    PitchHistogram,
    Rule,
    chord_index,
    degree_index,
    get_rule,
)
from .tasks import RuleTask, guided_tasks

try:
    __version__ = _metadata.version("steerdiff-music")
except _metadata.PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    # the entry point
    "MusicPipeline",
    "Generation",
    "WEIGHTS",
    "build_objective",
    "draw_reference",
    "read_targets",
    "targets_from_midi",
    "normalise_histogram",
    "evaluate_samples",
    "load_samples",
    "save_samples",
    "trained_steps",
    # rolls and MIDI
    "RollConfig",
    "MidiInfo",
    "MidiError",
    "Notes",
    "midi_to_roll",
    "roll_to_midi",
    "notes_to_roll",
    "roll_to_notes",
    "to_model",
    "from_model",
    "note_masks",
    "save_midi",
    "save_wav",
    # data
    "Pieces",
    "synthetic_pieces",
    "load_midi_folder",
    "bach_chorales",
    "split",
    "windows",
    "save_pieces",
    "load_pieces",
    "prepare_data",
    "save_split",
    "load_split",
    # rules
    "Rule",
    "PitchHistogram",
    "NoteDensity",
    "ChordProgression",
    "CustomRule",
    "Objective",
    "RULES",
    "get_rule",
    "CHORD_NAMES",
    "chord_index",
    "degree_index",
    # models and sampling
    "ModelConfig",
    "MusicModel",
    "EmpiricalDenoiser",
    "build_denoiser",
    "train_model",
    "save_model",
    "load_model",
    "METHODS",
    "DEFAULTS",
    "check_window",
    "generate",
    "bars_mask",
    # metrics, plots, the demo
    "ATTRIBUTES",
    "attributes",
    "overlapping_area",
    "oa_table",
    "voice_counts",
    "voice_realism",
    "validation_loss",
    "measure_prior",
    "prior_splits",
    "plot_rolls",
    "demo_run_dir",
    "ensure_demo_model",
    "run_demo",
    "RuleTask",
    "guided_tasks",
]
