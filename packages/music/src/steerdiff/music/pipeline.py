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
from steerdiff.core.io import atomic_open
from steerdiff.core.runtime import resolve_device
from steerdiff.core.sampling import Costs
from steerdiff.core.training import TrainConfig

from .data import Pieces, windows
from .guide import METHODS, bars_mask, generate
from .metrics import oa_table
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
from .roll import MidiInfo, RollConfig, check_batch, from_model, roll_to_midi, save_midi, save_wav
from .rules import RULES, Objective, Rule, chord_index, degree_index, get_rule

__all__ = [
    "WEIGHTS",
    "MusicPipeline",
    "Generation",
    "build_objective",
    "draw_reference",
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

    A rule's target comes from ``targets[name]`` when given, else from ``reference`` rolls (B, C, P, length)
    in model space (one target per reference roll). A chord target given in ``targets`` adds the chord rule.
    ``weights``: per rule name; by default ``WEIGHTS`` when there are several rules, else 1.
    """
    if isinstance(rules, Objective):
        if rules.num_steps != length:
            raise ValueError(f"the objective was built for {rules.num_steps} steps, the rolls have {length}")
        return rules
    targets = dict(targets or {})
    names = _rule_names(rules)
    if "chord_progression" in targets and "chord_progression" not in names:
        names.append("chord_progression")
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
    rule's loss per piece, (B,) tensors; ``costs``: network evaluations per piece (the core's ``Costs``).
    """

    x: torch.Tensor
    roll: RollConfig
    method: str
    rule_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    costs: Costs | None = None
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)

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
        return paths

    def summary(self) -> dict:
        """A JSON-ready summary: method, settings, mean rule loss per rule, costs, seconds."""
        return {
            "method": self.method,
            **self.settings,
            "rules": list(self.rule_losses),
            "rule_loss": {k: float(v.float().mean()) for k, v in self.rule_losses.items()},
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
    """OA of the generated rolls' attributes against real rolls (both model space), and each rule's mean
    loss."""
    check_batch(x, config, "the generated rolls")
    check_batch(real, config, "the real rolls")
    out = {"oa": oa_table(x, real, config), "num_samples": int(x.shape[0]), "num_real": int(real.shape[0])}
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
        method: str = "scg",
        num_samples: int = 4,
        steps: int = 50,
        n: int = 8,
        reference: torch.Tensor | None = None,
        weights: Mapping[str, float] | None = None,
        bars: int | None = None,
        seed: int = 0,
        guide_fraction: float = 0.75,
        lam: float = 10.0,
        dps_scale: float = 1.0,
        solver: str = "ddpm",
        known: torch.Tensor | None = None,
        known_bars: Sequence[int] | None = None,
        progress: bool = False,
    ) -> Generation:
        """Sample ``num_samples`` pieces of ``bars`` bars (default: the model's window) with ``steps`` sampler
        steps, steered toward ``rules`` by ``method`` (one of ``METHODS``; "unguided" when there are no
        rules).

        ``n``: candidates per step (SCG), particles (SMC), samples per output (best-of-n). ``reference``:
        rolls to take targets from when ``targets`` does not give them (one per sample: a pool of another size
        is drawn from with :func:`draw_reference`). ``known`` with ``known_bars``: keep those bars of the roll
        ``known`` (C, P, T) and generate the rest. The same ``seed`` gives the same pieces.
        """
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
        length = self.length if bars is None else int(bars) * self.roll.steps_per_bar
        if length < 1:
            raise ValueError(f"bars must be positive, got {bars}")
        if reference is not None and reference.shape[0] != num_samples:
            reference = draw_reference(reference, num_samples, seed)
        obj = build_objective(self.roll, length, rules, targets, reference, weights)
        method = method if obj is not None else "unguided"
        mask = None
        if known is not None or known_bars is not None:
            if known is None or known_bars is None:
                raise ValueError("keeping given bars needs both known (the roll) and known_bars (which bars)")
            mask = bars_mask(self.roll, length, known_bars)
        t0 = time.time()
        res = generate(
            self.denoiser,
            self.roll,
            num_samples,
            length,
            steps,
            method,
            obj,
            n=n,
            guide_fraction=guide_fraction,
            lam=lam,
            dps_scale=dps_scale,
            known=known,
            known_mask=mask,
            generator=torch.Generator(self.device).manual_seed(int(seed)),
            device=self.device,
            progress=progress,
            solver=solver,
        )
        losses = obj.losses(res.x) if obj is not None else {}
        settings = {"n": n, "steps": steps, "bars": length // self.roll.steps_per_bar, "seed": seed}
        if method in ("scg", "smc"):
            settings["guide_fraction"] = guide_fraction
        return Generation(
            res.x,
            self.roll,
            method,
            {k: v.detach().cpu() for k, v in losses.items()},
            res.costs,
            time.time() - t0,
            settings,
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
