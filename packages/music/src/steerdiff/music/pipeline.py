"""``MusicPipeline``: load (or train) a piano-roll model, generate rule-guided pieces, write MIDI.

    from steerdiff.music import MusicPipeline

    pipe = MusicPipeline.from_pretrained("runs/music/train/model")
    out = pipe.generate(rules="chord_progression", targets={"chord_progression": ["I", "V", "vi", "IV"]},
                        method="scg", num_samples=4, steps=50)
    out.rule_losses                    # {"chord_progression": tensor of 4 losses}
    out.save("runs/music/gen")         # sample_00.mid ..., pianoroll.png, samples.npz

Targets are given per rule (``targets={name: value}``; chords as Roman numerals "I,V,vi,IV", key-relative as
in the SCG paper, or chord names "C,G,Am,F", absolute triads) or read from reference rolls (``reference=``:
one held-out window per sample). Several rules are weighted as in the paper (``WEIGHTS``) unless ``weights``
says otherwise.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from steerdiff.core.bundle import read_bundle_config
from steerdiff.core.io import atomic_open, write_json
from steerdiff.core.runtime import resolve_device
from steerdiff.core.sampling import Costs
from steerdiff.core.training import TrainConfig

from .data import Pieces, windows
from .guide import DEFAULTS, METHODS, bars_mask, check_window, default_lam, generate
from .metrics import oa_table, voice_realism
from .model import (
    DOMAIN,
    ModelConfig,
    build_denoiser,
    domain_config,
    load_model,
    save_model,
    train_model,
)
from .plot import plot_rolls
from .roll import (
    MidiInfo,
    RollConfig,
    check_batch,
    from_model,
    midi_to_roll,
    roll_to_midi,
    save_midi,
    save_wav,
    to_model,
)
from .rules import RULES, Objective, Rule, chord_index, degree_index, get_rule

__all__ = [
    "WEIGHTS",
    "MusicPipeline",
    "Generation",
    "build_objective",
    "draw_reference",
    "read_targets",
    "targets_from_midi",
    "normalise_histogram",
    "ChordTargets",
    "evaluate_samples",
    "load_samples",
    "save_samples",
    "trained_steps",
]

WEIGHTS = {
    "pitch_histogram": 40.0,
    "note_density": 1.0,
    "chord_progression": 1.0,
}  # the paper's multi-rule weights


# ------------------------------------------------------------------------------------------- objectives


COST_FIELDS = ("network_evals", "network_calls", "gradient_evals", "reward_evals", "reward_calls")


def _rule_names(rules) -> list:
    if rules is None:
        return []
    if isinstance(rules, str):
        return [r.strip() for r in rules.split(",") if r.strip()]
    if isinstance(rules, Rule):
        return [rules]
    return list(rules)


def _chord_rule(config: RollConfig, target) -> tuple[Rule, torch.Tensor]:
    """The chord rule and target for hand-written chords: Roman numerals (key-relative, the paper's rule) or
    chord names (absolute triads)."""
    if isinstance(target, ChordTargets):
        return get_rule("chord_progression", config, mode=target.mode), target.values
    if isinstance(target, str):
        target = [c.strip() for c in target.split(",") if c.strip()]
    if isinstance(target, (list, tuple)) and target and all(isinstance(c, str) for c in target):
        try:
            return get_rule("chord_progression", config), torch.tensor(
                degree_index(target), dtype=torch.float32
            )
        except ValueError:
            try:
                index = chord_index(target)
            except (ValueError, KeyError, IndexError) as err:
                raise ValueError(
                    f"cannot read the chords {','.join(target)} ({err}); give Roman numerals like "
                    f"I,V,vi,IV or chord names like C,G,Am,F"
                ) from None
            rule = get_rule("chord_progression", config, mode="absolute")
            return rule, torch.tensor(index, dtype=torch.float32)
    return get_rule("chord_progression", config), torch.as_tensor(target, dtype=torch.float32)


def build_objective(
    config: RollConfig,
    length: int,
    rules=None,
    targets: Mapping | None = None,
    reference: torch.Tensor | None = None,
    weights: Mapping[str, float] | None = None,
) -> Objective | None:
    """The :class:`Objective` of ``rules`` (names, "a,b" or Rule objects; None or "" for none) for rolls of
    ``length`` steps.

    A rule's target comes from ``targets[name]`` when given (a target given adds its rule), else from ``reference`` rolls (B, C, P, length)
    in model space (one target per reference roll). A target given in ``targets`` adds its rule.
    ``weights``: per rule name; by default ``WEIGHTS`` when there are several rules, else 1.
    """
    if isinstance(rules, Objective):
        if rules.num_steps != length:
            raise ValueError(f"the objective was built for {rules.num_steps} steps, the rolls have {length}")
        return rules
    targets = dict(targets or {})
    names = _rule_names(rules)
    given = {n if isinstance(n, str) else n.name for n in names}
    names += [t for t in targets if t in RULES and t not in given]  # a target given adds its rule
    plain = [n for n in names if not isinstance(n, Rule)]
    unknown = [n for n in plain if n not in RULES]
    if unknown:
        raise ValueError(f"unknown rule(s) {unknown}; choose from {sorted(RULES)}")
    extra = sorted(set(targets) - {n if isinstance(n, str) else n.name for n in names})
    if extra:
        raise ValueError(f"targets given for {extra}, which are not among the rules {names}")
    if not names:
        return None
    if reference is not None:
        check_batch(reference, config, "the reference rolls")
        if reference.shape[-1] != length:
            raise ValueError(
                f"the reference rolls have {reference.shape[-1]} steps but the pieces have {length}; "
                f"cut reference windows of the same length"
            )
    terms = []
    for item in names:
        rule = item if isinstance(item, Rule) else get_rule(item, config)
        name = rule.name
        if name in targets:
            if name == "chord_progression" and not isinstance(item, Rule):
                rule, target = _chord_rule(config, targets[name])
            else:
                target = targets[name]
        elif reference is not None:
            target = rule.attribute(reference)
        else:
            raise ValueError(
                f"rule {name!r} needs a target: give targets={{{name!r}: ...}} or reference rolls "
                f"(held-out windows) to take targets from"
            )
        w = (weights or {}).get(name, WEIGHTS.get(name, 1.0) if len(names) > 1 else 1.0)
        terms.append((rule, target, float(w)))
    return Objective(terms, length)


def _target_json(name: str, row: torch.Tensor) -> list:
    values = row.detach().cpu().double().tolist()
    if all(float(v).is_integer() for v in values) and name == "chord_progression":
        return [int(v) for v in values]
    return [round(float(v), 6) for v in values]


def targets_from_midi(paths, config: RollConfig, length: int) -> torch.Tensor:
    """Reference rolls (one per file, (B, C, P, length), model space) from MIDI files: the first ``length``
    steps of each piece, for targets "like" it (its pitch histogram, note density and chords).

    A file that cannot be read, or that is shorter than ``length`` steps, raises a clear error."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not paths:
        raise ValueError("give at least one reference MIDI file")
    rolls = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"reference MIDI {path} does not exist; give a .mid file")
        roll, _ = midi_to_roll(path, config, out_of_range="fold")
        if roll.shape[-1] < length:
            bars, have = length // config.steps_per_bar, roll.shape[-1] / config.steps_per_bar
            raise ValueError(
                f"reference MIDI {path} lasts {have:g} bars, shorter than the {bars} bars to generate; give "
                f"fewer bars (--bars {max(1, int(have))}) or a longer reference"
            )
        rolls.append(to_model(torch.from_numpy(np.asarray(roll[..., :length], dtype=np.float32))))
    return torch.stack(rolls)


def read_targets(source, config: RollConfig, length: int, num_samples: int) -> dict[str, torch.Tensor]:
    """Targets per rule from a JSON file (or the already parsed object): one object for every sample, or a
    list of ``num_samples`` objects, one per sample, each ``{rule: target}``.

    Targets: ``pitch_histogram`` 12 weights (C .. B; normalised to sum 1), ``note_density`` 2 x bars numbers
    (the mean number of sounding notes per step in each bar, then the number of steps with a note start in
    each bar), ``chord_progression`` one chord per bar (Roman numerals "I", "V", ..., scale degrees 1..7, or
    chord names "C", "Am", ...). Returns ``{rule: (B, D) tensor}`` (chords as ``targets`` entries that
    ``build_objective`` reads); any other layout raises an error naming the entry and the fix."""
    where = "the targets"
    if isinstance(source, (str, Path)):
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"targets file {path} does not exist; give a JSON file of targets")
        try:
            source = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(
                f"{path} is not valid JSON ({err}); write one object or a list of objects"
            ) from None
    entries = [source] * num_samples if isinstance(source, dict) else source
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(
            f"{where} must hold one object {{rule: target}} for every sample or a list of such objects, one "
            f"per sample"
        )
    if len(entries) != num_samples:
        raise ValueError(
            f"{where} holds {len(entries)} targets but {num_samples} samples are asked for; give one target "
            f"per sample or set --num-samples {len(entries)}"
        )
    names = set(entries[0]) if entries else set()
    for i, e in enumerate(entries):
        if set(e) != names:
            raise ValueError(
                f"{where}: entry {i} names the rules {sorted(e)}, entry 0 names {sorted(names)}; give the same "
                f"rules in every entry"
            )
    unknown = sorted(names - set(RULES))
    if unknown:
        raise ValueError(f"{where}: unknown rule(s) {unknown}; choose from {sorted(RULES)}")
    if not names:
        raise ValueError(f'{where} names no rule; give targets such as {{"pitch_histogram": [...]}}')
    out: dict = {}
    for name in sorted(names):
        rows = []
        for i, e in enumerate(entries):
            try:
                if name == "chord_progression":
                    rule, target = _chord_rule(config, e[name])
                    target = rule.check_target(target, length)
                    rows.append((rule.mode, target))
                    continue
                target = get_rule(name, config).check_target(e[name], length)
                if name == "pitch_histogram":
                    target = normalise_histogram(target)
                rows.append((None, target))
            except (ValueError, TypeError) as err:
                raise ValueError(f"{where}: entry {i}, {name}: {err}") from None
        modes = {m for m, _ in rows}
        if len(modes) > 1:
            raise ValueError(
                f"{where}: chord targets mix Roman numerals and chord names; use one kind in every entry"
            )
        out[name] = torch.cat([t for _, t in rows])
        if name == "chord_progression":
            out[name] = ChordTargets(out[name], modes.pop())
    return out


def normalise_histogram(target: torch.Tensor) -> torch.Tensor:
    """A pitch-class histogram target scaled to sum 1 (weights must be >= 0 and not all 0)."""
    if (target < 0).any() or (target.sum(-1) <= 0).any():
        raise ValueError("pitch histogram weights must be >= 0 with a positive sum (12 values, C .. B)")
    return target / target.sum(-1, keepdim=True)


@dataclass
class ChordTargets:
    """Chord targets (B, bars) already read: scale degrees (``mode="degree"``) or chord indices
    (``"absolute"``)."""

    values: torch.Tensor
    mode: str = "degree"


def draw_reference(pool: torch.Tensor, num: int, seed: int = 0) -> torch.Tensor:
    """``num`` rolls drawn (with replacement) from ``pool``, one target per generated sample; the draw uses
    the generator seeded ``seed + 1``, so targets and sampling noise differ."""
    if pool.shape[0] < 1:
        raise ValueError("the reference pool holds no rolls; give held-out windows to take targets from")
    g = torch.Generator().manual_seed(int(seed) + 1)
    return pool[torch.randint(pool.shape[0], (num,), generator=g)]


# ---------------------------------------------------------------------------------------------- results


@dataclass
class Generation:
    """Generated pieces and what they cost.

    ``x``: (B, C, P, T) rolls in model space ([-1, 1]; ``rolls`` gives them in [0, 1]); ``rule_losses``: each
    rule's loss per piece, (B,) tensors; ``targets``: each rule's target per piece, (B, D) tensors; ``costs``:
    network evaluations per piece (the core's ``Costs``).
    """

    x: torch.Tensor
    roll: RollConfig
    method: str
    rule_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    costs: Costs | None = None
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)
    targets: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def rolls(self) -> torch.Tensor:
        return from_model(self.x.detach().cpu())

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def titles(self) -> list[str]:
        return [
            f"#{i} " + " ".join(f"{k[:5]}={float(v[i]):.3g}" for k, v in self.rule_losses.items())
            for i in range(len(self))
        ]

    def to_midi(self, tempo: float = 100.0) -> list:
        """One ``pretty_midi.PrettyMIDI`` per piece, at ``tempo`` beats per minute."""
        return [
            roll_to_midi(
                self.x[i].cpu(), self.roll, MidiInfo(tempo=tempo, name=f"sample_{i}"), model_space=True
            )
            for i in range(len(self))
        ]

    def save(self, folder, tempo: float = 100.0, wav: bool = False, plot: bool = True) -> list[Path]:
        """Write ``samples.npz`` (the rolls), ``sample_XX.mid`` per piece (``.wav`` previews with ``wav``) and
        a ``pianoroll.png`` into ``folder``; returns the paths."""
        folder = Path(folder)
        paths = [save_samples(folder / "samples.npz", self.x, self.roll)]
        for i, pm in enumerate(self.to_midi(tempo)):
            paths.append(save_midi(pm, folder / f"sample_{i:02d}.mid"))
            if wav:
                paths.append(save_wav(pm, folder / f"sample_{i:02d}.wav"))
        if plot:
            paths.append(plot_rolls(self.x, self.roll, folder / "pianoroll.png", self.titles()))
        if self.targets:
            paths.append(write_json(folder / "targets.json", self.per_sample()))
        return paths

    def per_sample(self) -> list[dict]:
        """One record per piece: its MIDI file name, each rule's target and loss (chord targets as scale
        degrees 1..7, 0 = no chord, or chord names for absolute chords)."""
        out = []
        for i in range(len(self)):
            out.append(
                {
                    "sample": i,
                    "midi": f"sample_{i:02d}.mid",
                    "target": {k: _target_json(k, v[i]) for k, v in self.targets.items()},
                    "loss": {k: float(v[i]) for k, v in self.rule_losses.items()},
                }
            )
        return out

    def summary(self) -> dict:
        """A JSON-ready summary: method, settings, mean rule loss per rule, costs, seconds."""
        return {
            "method": self.method,
            **self.settings,
            "rules": list(self.rule_losses),
            "rule_loss": {k: float(v.float().mean()) for k, v in self.rule_losses.items()},
            "rule_loss_per_sample": {k: [round(float(x), 6) for x in v] for k, v in self.rule_losses.items()},
            "costs": self.costs.as_dict() if self.costs is not None else {},
            "seconds": round(self.seconds, 2),
        }


def save_samples(path, x: torch.Tensor, config: RollConfig) -> Path:
    """Write rolls (B, C, P, T) in model space and their roll layout to one .npz (atomically, no pickle)."""
    with atomic_open(path, "wb") as f:
        np.savez_compressed(f, x=x.detach().cpu().numpy(), config=np.array(json.dumps(config.to_dict())))
    return Path(path)


def load_samples(path) -> tuple[torch.Tensor, RollConfig]:
    """Rolls and roll layout written by :func:`save_samples` (``Generation.save``), with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"samples file {path} does not exist; give the samples.npz a generate run wrote"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            x, config = torch.from_numpy(z["x"]), RollConfig(**json.loads(str(z["config"])))
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"{path} is not a samples file written by generate ({type(err).__name__}: {err}); give "
            f"the samples.npz a generate run wrote"
        ) from None
    check_batch(x, config, f"the rolls in {path}")
    return x, config


def evaluate_samples(
    x: torch.Tensor, real: torch.Tensor, config: RollConfig, objective: Objective | None = None
) -> dict:
    """OA of the generated rolls' attributes against real rolls (both model space), voice realism (the share of
    steps with the real rolls' typical number of sounding notes, :func:`voice_realism`), and each rule's mean
    loss."""
    check_batch(x, config, "the generated rolls")
    check_batch(real, config, "the real rolls")
    out = {
        "oa": oa_table(x, real, config),
        "voices": voice_realism(x, real, config),
        "num_samples": int(x.shape[0]),
        "num_real": int(real.shape[0]),
    }
    if objective is not None:
        out["rule_loss"] = {k: float(v.mean()) for k, v in objective.losses(x).items()}
    return out


def trained_steps(path) -> int:
    """Training steps of the model bundle at ``path``; 0 when there is none (or it is not a music model)."""
    try:
        meta = read_bundle_config(path, DOMAIN)
    except (ValueError, OSError):
        return 0
    return int(meta["domain"].get("training", {}).get("steps", 0) or 0)


# --------------------------------------------------------------------------------------------- pipeline


class MusicPipeline:
    """A piano-roll diffusion model ready to generate: its denoiser, roll layout and window length.

    ``from_pretrained(path)`` loads a model bundle; ``train(...)`` trains one; ``save_pretrained(path)``
    writes it; ``generate(...)`` samples pieces, unguided or steered toward rules; ``to_midi`` /
    ``write_midi`` write them; ``evaluate`` scores them against real pieces.
    """

    def __init__(
        self,
        denoiser: torch.nn.Module,
        roll: RollConfig,
        length: int,
        info: dict | None = None,
        device="auto",
    ):
        if length < 1 or length % roll.steps_per_bar:
            raise ValueError(
                f"length must be a positive whole number of bars ({roll.steps_per_bar} steps each), "
                f"got {length}"
            )
        self.device = resolve_device(device)
        self.denoiser = denoiser.to(self.device).eval()
        self.roll = roll
        self.length = int(length)
        self.info = dict(info or {})

    def __repr__(self) -> str:
        return (
            f"MusicPipeline(bars={self.bars}, steps_per_bar={self.roll.steps_per_bar}, pitches="
            f"{self.roll.pitch_low}..{self.roll.pitch_high}, device={self.device})"
        )

    @property
    def bars(self) -> int:
        return self.length // self.roll.steps_per_bar

    # ------------------------------------------------------------------------------------- load and save
    @classmethod
    def from_pretrained(cls, path, device="auto") -> MusicPipeline:
        """Load a model bundle (``save_pretrained`` or ``steerdiff-music train`` wrote it)."""
        device = resolve_device(device)
        m = load_model(path, device=device)
        return cls(m.denoiser, m.roll, m.length, m.info, device)

    def save_pretrained(self, path) -> Path:
        """Write the model as a bundle at ``path`` (atomically: a reader sees the old bundle or the new
        one)."""
        model = ModelConfig(**self.info["model"]) if "model" in self.info else None
        return save_model(
            path,
            self.denoiser,
            self.roll,
            self.length,
            model,
            self.info.get("data"),
            self.info.get("training"),
        )

    @classmethod
    def train(
        cls,
        train: Pieces | torch.Tensor,
        roll: RollConfig | None = None,
        bars: int = 4,
        transpose: int = 3,
        train_steps: int = 2000,
        batch_size: int = 32,
        lr: float = 1e-3,
        channels: int = 16,
        seed: int = 0,
        checkpoint_dir=None,
        device="auto",
        progress: bool = True,
        data_info: dict | None = None,
    ) -> MusicPipeline:
        """Train the U-Net on training pieces (cut into ``bars``-bar windows, transposed by -k..k semitones)
        or on ready windows (N, C, P, T) in model space (then give ``roll``).

        With ``checkpoint_dir`` training keeps a checkpoint there and resumes from it when run again.
        """
        if isinstance(train, Pieces):
            roll = train.config
            data = windows(train, bars * roll.steps_per_bar, transpose=range(-transpose, transpose + 1))
        else:
            if roll is None:
                raise ValueError("training on windows needs their roll layout: give roll=RollConfig(...)")
            data = train
        check_batch(data, roll, "the training windows")
        if data.shape[-1] % roll.steps_per_bar:
            raise ValueError(
                f"the training windows have {data.shape[-1]} steps, not a whole number of bars of "
                f"{roll.steps_per_bar} steps"
            )
        model = ModelConfig(base_channels=channels)
        config = TrainConfig(
            steps=train_steps,
            batch_size=min(batch_size, data.shape[0]),
            lr=lr,
            seed=seed,
            checkpoint_every=max(1, min(100, train_steps // 5)),
            ema_decay=0.99,
        )
        t0 = time.time()
        res = train_model(data, roll, checkpoint_dir, model, config, device=device, progress=progress)
        training = {
            "steps": res.step,
            "resumed_from": res.resumed_from,
            "batch_size": config.batch_size,
            "lr": lr,
            "seed": seed,
            "ema_decay": config.ema_decay,
            "final_loss": float(np.mean(res.losses[-50:])) if res.losses else None,
            "seconds": round(time.time() - t0, 1),
        }
        data_section = {"windows": int(data.shape[0]), "transpose": transpose, **(data_info or {})}
        if isinstance(train, Pieces):
            data_section.setdefault("train_pieces", len(train))
        info = domain_config(roll, data.shape[-1], model, data_section, training)
        info = {k: v for k, v in info.items() if k not in ("roll", "length")}
        return cls(res.ema, roll, data.shape[-1], info, device)

    @classmethod
    def untrained(
        cls, roll: RollConfig, bars: int = 4, channels: int = 16, seed: int = 0, device="cpu"
    ) -> MusicPipeline:
        """A pipeline around a freshly initialised network (for checking a setup end to end)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            den = build_denoiser(roll, ModelConfig(base_channels=channels))
        info = domain_config(roll, bars * roll.steps_per_bar, ModelConfig(base_channels=channels))
        info = {k: v for k, v in info.items() if k not in ("roll", "length")}
        return cls(den, roll, bars * roll.steps_per_bar, info, device)

    # ------------------------------------------------------------------------------------------- generate
    def objective(
        self,
        rules=None,
        targets: Mapping | None = None,
        reference: torch.Tensor | None = None,
        weights: Mapping[str, float] | None = None,
        bars: int | None = None,
    ) -> Objective | None:
        """The :class:`Objective` ``generate`` would steer toward (see :func:`build_objective`)."""
        length = self.length if bars is None else bars * self.roll.steps_per_bar
        return build_objective(self.roll, length, rules, targets, reference, weights)

    def generate(
        self,
        rules=None,
        targets: Mapping | None = None,
        method: str | None = None,
        num_samples: int = 4,
        steps: int = 50,
        n: int = 8,
        reference: torch.Tensor | None = None,
        weights: Mapping[str, float] | None = None,
        bars: int | None = None,
        seed: int = 0,
        window: tuple[float, float] | None = None,
        lam: float | None = None,
        dps_scale: float | None = None,
        beams: int = 2,
        selection: str = "top",
        temperature: float = 1.0,
        solver: str = "ddpm",
        known: torch.Tensor | None = None,
        known_bars: Sequence[int] | None = None,
        progress: bool = False,
        shards=None,
        chunk_size: int = 16,
    ) -> Generation | None:
        """Sample ``num_samples`` pieces of ``bars`` bars (default: the model's window) with ``steps`` sampler
        steps, steered toward ``rules`` by ``method`` (one of ``METHODS``; default "scg" with rules, "unguided"
        without; a guided method without rules is an error).

        ``n``: candidates per step (SCG), particles (SMC), samples per output (best-of-n), children per beam
        (tree search, with ``beams`` beams). ``targets``: per rule, one target for every sample or a (B, D)
        batch, one per sample (see :func:`read_targets`, :func:`targets_from_midi`). ``reference``: rolls to
        take targets from when ``targets`` does not give them (one per sample: a pool of another size is
        drawn from with :func:`draw_reference`). ``window``: the guided steps as (start, stop) fractions;
        ``lam``: SMC's strength; ``dps_scale``: DPS's step size; each defaults to the value chosen on
        validation (``DEFAULTS``). ``known`` with ``known_bars``: keep those bars of the roll ``known`` (C, P,
        T) and generate the rest. The same ``seed`` gives the same pieces. The result records every sample's
        target and loss.

        ``shards`` (a folder): sample in resumable chunks of ``chunk_size`` pieces with
        :func:`steerdiff.core.sample_in_shards`, each chunk from its own seed and kept in ``shards/shards``;
        under ``torchrun`` the chunks are shared out over the processes, rank 0 returns the merged result and
        the other ranks None. The pieces do not depend on the number of processes (they differ from an
        unsharded run, whose one batch draws from one generator).
        """
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if method is not None and method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
        length = self.length if bars is None else int(bars) * self.roll.steps_per_bar
        if length < 1:
            raise ValueError(f"bars must be positive, got {bars}")
        if reference is not None and reference.shape[0] != num_samples:
            reference = draw_reference(reference, num_samples, seed)
        obj = build_objective(self.roll, length, rules, targets, reference, weights)
        if method is None:
            method = "scg" if obj is not None else "unguided"
        if method != "unguided" and obj is None:
            raise ValueError(
                f"method {method!r} steers toward rules, but no rule was given; name rules (rules=..., "
                f"--rules) with targets, or use method 'unguided'"
            )
        mask = None
        if known is not None or known_bars is not None:
            if known is None or known_bars is None:
                raise ValueError("keeping given bars needs both known (the roll) and known_bars (which bars)")
            mask = bars_mask(self.roll, length, known_bars)
        if window is not None:
            window = check_window(window)
        t0 = time.time()
        opts = dict(
            n=n,
            window=window,
            lam=lam,
            dps_scale=dps_scale,
            beams=beams,
            selection=selection,
            temperature=temperature,
            known=known,
            known_mask=mask,
            device=self.device,
            solver=solver,
        )
        if shards is None:
            generator = torch.Generator(self.device).manual_seed(int(seed))
            res = generate(
                self.denoiser,
                self.roll,
                num_samples,
                length,
                steps,
                method,
                obj,
                generator=generator,
                progress=progress,
                **opts,
            )
            x, costs = res.x, res.costs
        else:
            merged = self._generate_in_shards(
                obj, num_samples, length, steps, method, seed, shards, chunk_size, progress, opts
            )
            if merged is None:
                return None  # another torchrun rank: rank 0 merges
            x = merged["x"].to(self.device)
            costs = Costs(num_samples=num_samples)
            for i, name in enumerate(COST_FIELDS):
                setattr(costs, name, round(float(merged["costs"][:, i].sum())))
        losses = obj.losses(x) if obj is not None else {}
        settings = {"n": n, "steps": steps, "bars": length // self.roll.steps_per_bar, "seed": seed}
        if method in ("scg", "smc", "tree_search", "dps"):
            settings["window"] = list(window or DEFAULTS["window"].get(method, (0.0, 1.0)))
        if method == "smc":
            settings["lam"] = default_lam(obj) if lam is None else float(lam)
        if method == "dps":
            settings["dps_scale"] = float(DEFAULTS["dps_scale"] if dps_scale is None else dps_scale)
        if method == "tree_search":
            settings.update(beams=beams, selection=selection, temperature=temperature)
        per_sample = (
            {t.rule.name: t.target.expand(num_samples, -1).detach().cpu() for t in obj.terms} if obj else {}
        )
        return Generation(
            x,
            self.roll,
            method,
            {k: v.detach().cpu() for k, v in losses.items()},
            costs,
            time.time() - t0,
            settings,
            per_sample,
        )

    def _generate_in_shards(
        self, obj, num_samples, length, steps, method, seed, shards, chunk_size, progress, opts
    ):
        """``generate`` over chunks of pieces with the core's sharded sampler: rows ``x`` and each piece's share
        of its chunk's costs (``COST_FIELDS``)."""
        from steerdiff.core.sharding import fingerprint, join_process_group, sample_in_shards

        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        join_process_group()
        device = self.device

        def job(start, stop, generator):
            g = torch.Generator(device).manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            part = obj.rows(start, stop) if obj is not None else None
            res = generate(
                self.denoiser, self.roll, stop - start, length, steps, method, part, generator=g, **opts
            )
            share = torch.tensor([float(getattr(res.costs, f)) for f in COST_FIELDS]) / (stop - start)
            return {"x": res.x, "costs": share.expand(stop - start, -1)}

        key = {  # shards of another model, objective or setting are never reused
            "model": fingerprint(self.denoiser),
            "method": method,
            "length": length,
            "steps": steps,
            "rules": None if obj is None else [[t.rule.name, t.target.tolist(), t.weight] for t in obj.terms],
            "options": {k: v for k, v in opts.items() if k not in ("known", "known_mask", "device")},
            "known": None if opts["known"] is None else fingerprint(opts["known"], opts["known_mask"]),
        }
        key = json.loads(json.dumps(key))  # as the plan file reads back (tuples become lists)
        return sample_in_shards(
            job, num_samples, shards, chunk_size=chunk_size, seed=int(seed), key=key, progress=progress
        )

    # --------------------------------------------------------------------------------------- output
    def to_midi(self, x, tempo: float = 100.0) -> list:
        """``pretty_midi.PrettyMIDI`` objects for rolls (B, C, P, T) in model space or a
        :class:`Generation`."""
        if isinstance(x, Generation):
            return x.to_midi(tempo)
        check_batch(x, self.roll, "the rolls")
        return Generation(x, self.roll, "given").to_midi(tempo)

    def write_midi(self, x, folder, tempo: float = 100.0, wav: bool = False) -> list[Path]:
        """Write one ``sample_XX.mid`` per roll (and ``.wav`` previews with ``wav``) into ``folder``."""
        paths = []
        for i, pm in enumerate(self.to_midi(x, tempo)):
            paths.append(save_midi(pm, Path(folder) / f"sample_{i:02d}.mid"))
            if wav:
                paths.append(save_wav(pm, Path(folder) / f"sample_{i:02d}.wav"))
        return paths

    def evaluate(
        self,
        x,
        real: torch.Tensor,
        rules=None,
        targets: Mapping | None = None,
        reference: torch.Tensor | None = None,
    ) -> dict:
        """OA against ``real`` rolls and, with ``rules``, each rule's mean loss (see
        :func:`evaluate_samples`)."""
        x = x.x if isinstance(x, Generation) else x
        obj = build_objective(self.roll, x.shape[-1], rules, targets, reference)
        return evaluate_samples(x, real, self.roll, obj)
