"""Symbolic rules, vectorised over a batch of rolls, and the losses that guidance turns into rewards.

A :class:`Rule` maps a batch of rolls (B, C, P, T) in model space to an attribute (B, D) and compares it with
a target by a loss (B,). Rules read the *decoded* roll (``roll.note_masks``): the same notes the MIDI file
would hold, so a rule's value on a sample is its value on the written piece. That makes most rules piecewise
constant in x — no gradient — which is what stochastic control guidance is for. Rules that have a natural
relaxation (pitch histogram, note density) also answer ``attribute(x, relaxed=True)``: the same formula on the
soft roll (x + 1) / 2, differentiable, for DPS-style gradient guidance.

* :class:`PitchHistogram` — 12-bin pitch-class histogram of sounding cells (duration-weighted), sums to 1;
  MSE.
* :class:`NoteDensity` — per window: vertical density (mean number of sounding pitches per step) and
  horizontal density (number of steps where a note starts); MSE.
* :class:`ChordProgression` — per window, the chord as in the SCG paper: the scale degree (1..7, 0 = no chord)
  of its root in the piece's key, both estimated from the roll itself, so a progression matches in any key
  (``mode="absolute"``: one of 24 major/minor triads instead); loss = fraction of windows whose chord differs
  from the target.
* :class:`CustomRule` — any Python function of the decoded roll.

:class:`Objective` binds rules to targets and weights: ``losses(x)`` per rule, ``loss(x)`` the weighted sum,
``reward(x)`` = -loss for SCG/SMC, ``relaxed_loss(x)`` for DPS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from steerdiff.core.guidance import match_batch, weighted_reward

from .roll import RollConfig, check_batch, note_masks

__all__ = [
    "Rule",
    "PitchHistogram",
    "NoteDensity",
    "ChordProgression",
    "CustomRule",
    "Objective",
    "CHORD_NAMES",
    "chord_index",
    "chord_root",
    "degree_index",
    "estimate_key",
    "RULES",
    "get_rule",
]

PITCH_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
CHORD_NAMES = PITCH_NAMES + [n + "m" for n in PITCH_NAMES] + ["N"]
NO_CHORD = 24
# Aarden-Essen key profiles (C = index 0): the weights of music21's default key finder, stream.analyze('key'),
# which the SCG reference code runs on every candidate before naming its chords as Roman numerals
_KEY_MAJOR = (
    17.7661,
    0.145624,
    14.9265,
    0.160186,
    19.8049,
    11.3587,
    0.291248,
    22.062,
    0.145624,
    8.15494,
    0.232998,
    4.95122,
)
_KEY_MINOR = (
    18.2648,
    0.737619,
    14.0499,
    16.8599,
    0.702494,
    14.4362,
    0.702494,
    18.6161,
    4.56621,
    1.93186,
    7.37619,
    1.75623,
)
# semitones from the tonic to a chord root -> scale degree 1..7 (chromatic roots: bII, bIII, #IV, bVI, bVII)
_DEGREE_OF_INTERVAL = (1, 2, 2, 3, 3, 4, 4, 5, 6, 6, 7, 7)
_NUMERALS = ("VII", "VI", "V", "IV", "III", "II", "I")  # longest first, for parsing


def chord_index(names: Sequence[str | int]) -> list[int]:
    """Chord names ("C", "F#m", "N" for no chord) or indices -> indices 0..24."""
    out = []
    for n in names:
        if isinstance(n, (int,)) or (isinstance(n, str) and n.isdigit()):
            i = int(n)
            if not 0 <= i <= NO_CHORD:
                raise ValueError(f"chord index {i} is outside 0..{NO_CHORD}")
        else:
            alias = {"Db": "C#", "D#": "Eb", "Gb": "F#", "G#": "Ab", "A#": "Bb"}
            root, minor = (n[:-1], True) if n.endswith("m") else (n, False)
            root = alias.get(root, root)
            name = root + ("m" if minor else "")
            if name not in CHORD_NAMES:
                raise ValueError(
                    f"unknown chord {n!r}; use a root C, C#, D, Eb, E, F, F#, G, Ab, A, Bb, B with an "
                    f"optional 'm' for minor, or 'N' for no chord"
                )
            i = CHORD_NAMES.index(name)
        out.append(i)
    return out


def degree_index(numerals: Sequence[str | int]) -> list[int]:
    """Roman numerals ("I", "V7", "vi", "bVII", "viio"; "N" or "0" for no chord) or degrees -> degrees
    0..7."""
    out = []
    for n in numerals:
        s = str(n).strip()
        if s.isdigit():
            if not 0 <= int(s) <= 7:
                raise ValueError(f"scale degree {s} is outside 0..7 (0 = no chord)")
            out.append(int(s))
            continue
        if s.upper() == "N":
            out.append(0)
            continue
        core = s.lstrip("b#").upper()
        match = next((r for r in _NUMERALS if core.startswith(r)), None)
        if match is None:
            raise ValueError(
                f"unknown Roman numeral {n!r}; use I..VII (any case, optional b/# and suffix such as "
                f"V7 or viio), a degree 0..7, or 'N' for no chord"
            )
        out.append(7 - _NUMERALS.index(match))
    return out


def estimate_key(profile: torch.Tensor) -> torch.Tensor:
    """Key index per row of a duration-weighted pitch-class profile (..., 12): 0..11 = C..B major, 12..23 =
    c..b minor, the key whose Aarden-Essen profile correlates best with it (Pearson; music21's key finder)."""
    w = torch.tensor([_KEY_MAJOR, _KEY_MINOR], dtype=profile.dtype, device=profile.device)  # (2, 12)
    shift = (
        torch.arange(12, device=profile.device)[None] - torch.arange(12, device=profile.device)[:, None]
    ) % 12
    templates = w[:, shift].reshape(
        24, 12
    )  # row 12 m + k: the mode-m profile with its tonic on pitch class k
    templates = templates - templates.mean(-1, keepdim=True)
    centred = profile - profile.mean(-1, keepdim=True)
    return (centred @ (templates / templates.norm(dim=-1, keepdim=True)).T).argmax(-1)


# how strongly a pitch class (semitones above a candidate root) marks that root: thirds and fifth first,
# then sevenths; a chord's root is its pitch class whose others score highest (thirds stacked above it)
_ROOT_WEIGHT = (0.0, 0.2, 0.2, 1.0, 1.0, 0.1, 0.8, 1.0, 0.5, 0.3, 0.6, 0.6)


def chord_root(pcs: torch.Tensor, bass: torch.Tensor) -> torch.Tensor:
    """Root pitch class (...,) of chords given as pitch-class sets (..., 12) in {0, 1}; ties go to the bass
    pitch class ``bass`` (...,). A stand-in for music21's ``Chord.root()`` on pitch classes."""
    i = torch.arange(12, device=pcs.device)
    w = torch.tensor(_ROOT_WEIGHT, dtype=pcs.dtype, device=pcs.device)[(i[:, None] - i[None]) % 12]  # [q, r]
    score = pcs @ w + 0.01 * torch.nn.functional.one_hot(bass, 12).to(pcs.dtype)
    return score.masked_fill(pcs == 0, -1.0).argmax(-1)


class Rule:
    """Base class: ``attribute(x, relaxed=False) -> (B, D)``, ``loss(attribute, target) -> (B,)``."""

    name: str = "rule"
    differentiable: bool = False
    # guidance reads the soft x0-hat (x + 1) / 2 instead of its decoded notes (as the SCG paper's pitch rule
    # does)
    soft_guidance: bool = False

    def __init__(self, config: RollConfig):
        self.config = config

    def attribute(self, x: torch.Tensor, relaxed: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def size(self, num_steps: int) -> int:
        """D for rolls of ``num_steps`` steps."""
        raise NotImplementedError

    def loss(self, attribute: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (attribute - target).pow(2).mean(-1)

    def _soft_or_hard(self, x: torch.Tensor, relaxed: bool):
        """(starts, sounding) as float (B, P, T): decoded {0, 1} masks, or their relaxation."""
        check_batch(x, self.config, f"the roll given to rule {self.name!r}")
        if relaxed:
            if not self.differentiable:
                raise TypeError(
                    f"rule {self.name!r} has no differentiable relaxation; gradient guidance (DPS) cannot "
                    f"use it — use StochasticControlGuidance or FeynmanKacSteering"
                )
            soft = ((x + 1) / 2).clamp(0, 1)
            return soft[:, 0] * soft[:, 1], soft[:, 1]
        starts, sounding = note_masks(x, self.config)
        return starts.to(x.dtype), sounding.to(x.dtype)

    def _windows(self, t: int, window: int) -> int:
        if t % window:
            raise ValueError(
                f"rule {self.name!r} uses windows of {window} steps, but the roll has {t} steps, which is "
                f"not a multiple; use a length that is a multiple of {window} or set window=..."
            )
        return t // window

    def check_target(self, target, num_steps: int) -> torch.Tensor:
        target = torch.as_tensor(target, dtype=torch.float32)
        d = self.size(num_steps)
        if target.ndim == 1:
            target = target[None]
        if target.ndim != 2 or target.shape[1] != d:
            raise ValueError(
                f"the target of rule {self.name!r} must have {d} entries for rolls of {num_steps} steps "
                f"(shape ({d},) or (batch, {d})), got shape {tuple(target.shape)}"
            )
        if not torch.isfinite(target).all():
            raise ValueError(f"the target of rule {self.name!r} contains NaN or inf")
        return target

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


def _pitch_class_matrix(config: RollConfig, like: torch.Tensor) -> torch.Tensor:
    pc = (torch.arange(config.num_pitches, device=like.device) + config.pitch_low) % 12
    return torch.nn.functional.one_hot(pc, 12).to(like.dtype)  # (P, 12)


class PitchHistogram(Rule):
    """12-bin pitch-class histogram (C = bin 0) of sounding cells, normalised to sum 1 (all zeros if silent).

    During guidance it reads the soft x0-hat (``soft_guidance``): the SCG paper's pitch rule sums the
    continuous (velocity-weighted) decoded x0-hat over time, while its density and chord rules threshold it
    into notes."""

    name = "pitch_histogram"
    differentiable = True
    soft_guidance = True

    def size(self, num_steps):
        return 12

    def attribute(self, x, relaxed=False):
        if relaxed:
            per_pitch = self._soft_or_hard(x, relaxed)[1].sum(-1)
        else:  # sounding cells (note_masks: sustain > 0), counted in one float pass; NaN counts as silent
            check_batch(x, self.config, f"the roll given to rule {self.name!r}")
            per_pitch = torch.sign(x[:, 1]).clamp_min_(0).nan_to_num_(0.0).sum(-1)
        counts = per_pitch @ _pitch_class_matrix(self.config, x)  # (B, 12)
        return counts / counts.sum(-1, keepdim=True).clamp_min(1e-8)


class NoteDensity(Rule):
    """Per window of ``window`` steps (default one bar): [vertical_1..n, horizontal_1..n].

    vertical = mean number of sounding pitches per step; horizontal = number of steps in which a note starts.
    """

    name = "note_density"
    differentiable = True

    def __init__(self, config: RollConfig, window: int | None = None):
        super().__init__(config)
        self.window = window or config.steps_per_bar

    def size(self, num_steps):
        return 2 * self._windows(num_steps, self.window)

    def attribute(self, x, relaxed=False):
        starts, sounding = self._soft_or_hard(x, relaxed)
        b, _, t = sounding.shape
        n = self._windows(t, self.window)
        vertical = sounding.sum(1).reshape(b, n, self.window).mean(-1)
        any_start = 1 - (1 - starts).prod(1) if relaxed else starts.amax(1)
        horizontal = any_start.reshape(b, n, self.window).sum(-1)
        return torch.cat([vertical, horizontal], dim=1)


def _chord_templates(like: torch.Tensor) -> torch.Tensor:
    t = torch.zeros(24, 12, dtype=like.dtype, device=like.device)
    roots = torch.arange(12, device=like.device)
    for k, third in enumerate((4, 3)):  # major, minor
        rows = roots + 12 * k
        t[rows, roots] = 1
        t[rows, (roots + third) % 12] = 1
        t[rows, (roots + 7) % 12] = 1
    return t / t.norm(dim=1, keepdim=True)


class ChordProgression(Rule):
    """One chord per window of ``window`` steps (default one bar); not differentiable.

    ``mode="degree"`` (default) follows the SCG paper's rule (music21: key analysis, chordify, Roman
    numerals): the key is estimated from the whole roll (``estimate_key``); the roll is cut into slices
    wherever a note starts or stops (chordify); in each window the slice with the longest overlap is the
    window's chord, and the scale degree 1..7 of its root (``chord_root``) in that key is the window's value,
    0 if nothing sounds. So "I IV V I" in G matches "I IV V I" in C, and a target taken from a reference piece
    is in its own key. ``mode="absolute"``: the major/minor triad template with the highest cosine similarity
    to the window's duration-weighted pitch-class profile (ties go to the lower index), an index into
    ``CHORD_NAMES`` (24 = no chord), for hand-written targets such as C G Am F. The loss is the fraction of
    windows that differ.
    """

    name = "chord_progression"
    differentiable = False
    MODES = ("degree", "absolute")

    def __init__(self, config: RollConfig, window: int | None = None, mode: str = "degree"):
        super().__init__(config)
        if mode not in self.MODES:
            raise ValueError(f"ChordProgression mode must be one of {list(self.MODES)}, got {mode!r}")
        self.window = window or config.steps_per_bar
        self.mode = mode

    def size(self, num_steps):
        return self._windows(num_steps, self.window)

    def check_target(self, target, num_steps):
        top = 7 if self.mode == "degree" else NO_CHORD
        if isinstance(target, (list, tuple)) and target and isinstance(target[0], str):
            target = degree_index(target) if self.mode == "degree" else chord_index(target)
        target = super().check_target(target, num_steps)
        if ((target < 0) | (target > top) | (target != target.round())).any():
            names = (
                "Roman numerals like 'I', 'V7', 'vi'"
                if self.mode == "degree"
                else "names like 'C', 'Am', 'N'"
            )
            raise ValueError(f"chord targets ({self.mode} mode) must be integers 0..{top} (or {names})")
        return target

    def attribute(self, x, relaxed=False):
        starts, sounding = self._soft_or_hard(x, relaxed)
        b, p, t = sounding.shape
        n, w = self._windows(t, self.window), self.window
        pcm = _pitch_class_matrix(self.config, x)
        if self.mode == "absolute":
            profile = sounding.reshape(b, p, n, w).sum(-1).transpose(1, 2) @ pcm  # (B, n, 12)
            chord = (profile @ _chord_templates(x).T).argmax(-1)  # (B, n): 0..23
            silent = profile.sum(-1) == 0
            return torch.where(silent, torch.full_like(chord, NO_CHORD), chord).to(x.dtype)
        tonic = estimate_key(sounding.sum(-1) @ pcm) % 12  # (B,)
        # slices: a new one wherever the set of sounding pitches changes or a note starts
        change = torch.ones(b, t, dtype=torch.bool, device=x.device)
        change[:, 1:] = (sounding[..., 1:] != sounding[..., :-1]).any(1) | (starts[..., 1:] > 0).any(1)
        slice_id = change.long().cumsum(1).reshape(b, n, w)
        voiced = (sounding.sum(1) > 0).reshape(b, n, w)
        length = ((slice_id[..., :, None] == slice_id[..., None, :]) & voiced[..., None, :]).sum(-1)
        length = length.masked_fill(~voiced, -1)  # (B, n, w)
        step = length.argmax(-1) + w * torch.arange(n, device=x.device)  # the longest slice
        column = sounding.gather(2, step[:, None, :].expand(b, p, n)) > 0  # (B, P, n)
        pcs = (column.transpose(1, 2).to(x.dtype) @ pcm).clamp_max(1)  # (B, n, 12)
        rows = torch.arange(p, device=x.device)
        bass = (
            torch.where(column, rows[None, :, None], p).amin(1).clamp_max(p - 1) + self.config.pitch_low
        ) % 12
        root = chord_root(pcs, bass)
        degree = torch.tensor(_DEGREE_OF_INTERVAL, device=x.device)[(root - tonic[:, None]) % 12]
        return torch.where(pcs.sum(-1) > 0, degree, torch.zeros_like(degree)).to(x.dtype)

    def loss(self, attribute, target):
        return (attribute != target).to(attribute.dtype).mean(-1)


class CustomRule(Rule):
    """A rule from a plain Python function ``fn(roll) -> (B, D)`` (or (B,)) of the decoded roll.

    ``roll`` is a float (B, 2, P, T) tensor in {0, 1}: channel 0 marks note starts, channel 1 sounding cells.
    ``loss`` is "mse" (default), "l1", or a function ``(attribute, target) -> (B,)``.
    """

    differentiable = False

    def __init__(
        self,
        config: RollConfig,
        fn: Callable,
        name: str = "custom",
        size: int | None = None,
        loss: str | Callable = "mse",
    ):
        super().__init__(config)
        if not callable(fn):
            raise TypeError(f"CustomRule needs a callable fn(roll) -> (B, D), got {fn!r}")
        if not (callable(loss) or loss in ("mse", "l1")):
            raise ValueError(f"loss must be 'mse', 'l1' or a callable, got {loss!r}")
        self.fn, self.name, self._size, self._loss = fn, name, size, loss

    def size(self, num_steps):
        if self._size is None:
            probe = torch.zeros(1, self.config.num_channels, self.config.num_pitches, num_steps) - 1
            return self.attribute(probe).shape[1]
        return self._size

    def attribute(self, x, relaxed=False):
        starts, sounding = self._soft_or_hard(x, relaxed)
        out = torch.as_tensor(self.fn(torch.stack([starts, sounding], 1)), dtype=x.dtype, device=x.device)
        out = out[:, None] if out.ndim == 1 else out
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise ValueError(
                f"custom rule {self.name!r} must return shape ({x.shape[0]}, D) or ({x.shape[0]},) for "
                f"{x.shape[0]} rolls, got {tuple(out.shape)}"
            )
        return out

    def loss(self, attribute, target):
        if callable(self._loss):
            return torch.as_tensor(self._loss(attribute, target))
        diff = attribute - target
        return diff.abs().mean(-1) if self._loss == "l1" else diff.pow(2).mean(-1)


RULES: dict[str, type[Rule]] = {
    "pitch_histogram": PitchHistogram,
    "note_density": NoteDensity,
    "chord_progression": ChordProgression,
}


def get_rule(name: str, config: RollConfig, **kwargs) -> Rule:
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; choose one of {sorted(RULES)} or write a CustomRule")
    return RULES[name](config, **kwargs)


@dataclass
class _Term:
    rule: Rule
    target: torch.Tensor  # (1, D) or (B, D)
    weight: float


class Objective:
    """Weighted rules with targets. ``terms``: (rule, target, weight) or (rule, target) triples/pairs.

    A target is one (D,) vector for every sample or a (B, D) batch, one per sample (e.g. extracted from B
    held-out pieces); during guided sampling its rows are matched to the candidates/particles of each sample.
    """

    def __init__(self, terms: Sequence[tuple], num_steps: int):
        if not terms:
            raise ValueError("an Objective needs at least one (rule, target[, weight]) term")
        self.num_steps = int(num_steps)
        self.terms = []
        for term in terms:
            rule, target, *rest = term
            if not isinstance(rule, Rule):
                raise TypeError(f"expected a Rule, got {rule!r}; wrap a function with CustomRule(config, fn)")
            weight = float(rest[0]) if rest else 1.0
            self.terms.append(_Term(rule, rule.check_target(target, self.num_steps), weight))
        names = [t.rule.name for t in self.terms]
        if len(set(names)) != len(names):
            raise ValueError(f"rule names must be unique within an objective, got {names}")
        self._reward = weighted_reward([(t.weight, self._negative_loss(t)) for t in self.terms])
        self._guidance_reward = weighted_reward(
            [(t.weight, self._negative_loss(t, t.rule.soft_guidance)) for t in self.terms]
        )

    @classmethod
    def from_reference(cls, rules: Sequence[Rule] | Sequence[tuple[Rule, float]], reference: torch.Tensor):
        """Targets taken from reference rolls (B, C, P, T) in model space: one target row per reference
        piece."""
        pairs = [(r, 1.0) if isinstance(r, Rule) else r for r in rules]
        return cls([(r, r.attribute(reference), w) for r, w in pairs], reference.shape[-1])

    @property
    def names(self) -> list[str]:
        return [t.rule.name for t in self.terms]

    def rows(self, start: int, stop: int) -> Objective:
        """The objective of samples ``start .. stop - 1``: per-sample targets cut to those rows, shared ones
        kept (what one chunk of a sharded run steers toward)."""
        terms = [
            (t.rule, t.target[start:stop] if t.target.shape[0] > 1 else t.target, t.weight)
            for t in self.terms
        ]
        return Objective(terms, self.num_steps)

    @property
    def differentiable(self) -> bool:
        return all(t.rule.differentiable for t in self.terms)

    def _check(self, x):
        if x.shape[-1] != self.num_steps:
            raise ValueError(
                f"the objective was built for rolls of {self.num_steps} steps, got {x.shape[-1]}; build "
                f"it for this length"
            )

    def _term_loss(self, term: _Term, x: torch.Tensor, relaxed: bool) -> torch.Tensor:
        self._check(x)
        target = match_batch(
            term.target.to(x.device, x.dtype), x.shape[0], f"the target of {term.rule.name!r}"
        )
        return term.rule.loss(term.rule.attribute(x, relaxed), target)

    def _negative_loss(self, term, relaxed: bool = False):
        return lambda x: -self._term_loss(term, x, relaxed)

    def losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each rule's loss on the decoded rolls, (B,) per rule name."""
        return {t.rule.name: self._term_loss(t, x, False) for t in self.terms}

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return -self._reward(x)

    def reward(self, x: torch.Tensor) -> torch.Tensor:
        """-loss on the decoded rolls: what a finished piece scores (best-of-n picks by it)."""
        return self._reward(x)

    def guidance_reward(self, x0_hat: torch.Tensor) -> torch.Tensor:
        """The reward StochasticControlGuidance / FeynmanKacSteering give each candidate's x0-hat: -loss, with
        the rules marked ``soft_guidance`` (pitch histogram) read on the soft estimate, as in the SCG paper;
        equal to ``reward`` on clean rolls (values -1 / 1)."""
        return self._guidance_reward(x0_hat)

    def relaxed_loss(self, x: torch.Tensor, partial: bool = False) -> torch.Tensor:
        """The weighted loss on the soft roll: differentiable, for ReconstructionGuidance (DPS).

        A rule without a relaxation (chords, most custom rules) raises, unless ``partial=True``, which keeps
        only the differentiable terms (as DPS baselines do in the SCG paper)."""
        terms = [t for t in self.terms if t.rule.differentiable] if partial else self.terms
        if not terms:
            raise TypeError(
                f"no rule of {self.names} has a differentiable relaxation; use StochasticControlGuidance"
            )
        return sum(t.weight * self._term_loss(t, x, True) for t in terms)
