"""Rule-guided music as tasks of the guidance matrix (``steerdiff.core.matrix``).

Each task steers the piano-roll prior toward the attributes of a held-out chorale window: its pitch-class
histogram, its note density, its chord progression, or pitch histogram and density together. Validation
instances take their targets from the validation chorales, test instances from the test chorales (neither is
in the prior's training data). Every instance gives the matrix:

* ``reward``: minus the task's loss on the *decoded* roll (the notes a MIDI file would hold; piecewise
  constant in x, no gradient), in units of the rule's within-chorale loss (below) so that SMC's lambda and
  tree search's temperature mean the same for every rule — for best-of-n, SCG, tree search and SMC;
* ``loss``: where every rule has a relaxation (pitch histogram, density), the Gaussian negative
  log-likelihood of the target under the relaxed attributes of the soft roll, ``||a(x) - y||^2 / (2 s^2)``
  — for DPS; chords have none, so DPS does not apply to them;
* ``forward`` / ``observation`` / ``noise_std``: the attribute vector of the decoded roll (chords one-hot per
  bar), the target's, and the measurement noise ``s`` — for EnKG.

The noise ``s`` of a rule is the spread of its attributes within one chorale: the root-mean-square difference,
per entry, between the attributes of two consecutive (non-overlapping) windows of the same validation chorale.
A sample within ``s`` of the target is as close to it as the chorale's next passage is. The multi-rule task
divides each rule's attributes by its ``s`` (so the observation noise is 1) and its loss is the sum of the
rules' losses, each divided by its within-chorale value ``s^2``.

The metric is the rule's own loss on the decoded samples (mean over the samples of an instance; lower is
better): the MSE of the histogram or of the densities, the share of bars whose chord misses the target, or the
normalised sum. ``guided_tasks(quick)`` builds the four tasks on the cached prior (``quick``: a tiny U-Net
trained in seconds and cached).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from steerdiff.core.matrix import GuidedTask, Target
from steerdiff.core.runtime import cache_dir

from .data import Pieces, bach_chorales, split, synthetic_pieces, windows
from .demo import DEMO_ROLL, demo_run_dir, ensure_demo_model
from .model import default_sigmas
from .pipeline import MusicPipeline, trained_steps
from .prior import prior_run_dir
from .roll import RollConfig, check_batch
from .rules import ChordProgression, NoteDensity, PitchHistogram, Rule

__all__ = ["RULE_SETS", "RuleTask", "guided_tasks", "quick_prior", "full_prior", "chorale_splits"]

# task key -> the rules it steers toward
RULE_SETS = {
    "pitch_histogram": ("pitch_histogram",),
    "note_density": ("note_density",),
    "chord_progression": ("chord_progression",),
    "multi": ("pitch_histogram", "note_density"),
}
_RULES = {
    "pitch_histogram": PitchHistogram,
    "note_density": NoteDensity,
    "chord_progression": ChordProgression,
}
_NAMES = {
    "pitch_histogram": "music pitch histogram",
    "note_density": "music note density",
    "chord_progression": "music chord progression",
    "multi": "music pitch hist. + density",
}
_METRICS = {
    "pitch_histogram": "pitch-class histogram MSE (12 shares summing to 1)",
    "note_density": "note-density MSE (sounding notes per step, onset steps per bar)",
    "chord_progression": "share of bars whose chord (scale degree) misses the target",
    "multi": "histogram MSE / s_h^2 + density MSE / s_d^2 (s^2: within-chorale spread)",
}
_DEGREES = 8  # chord values 0..7 (0 = no chord), one-hot per bar for EnKG
DEMO_PIECES = 60  # the demo's chorales: 51 train + 9 test; the validation chorales come after them
VAL_PIECES = 15
QUICK = {"bars": 2, "channels": 8, "train_steps": 60, "batch_size": 16, "pieces": 24, "seed": 0}


def chorale_splits(config: RollConfig | None = None) -> tuple[Pieces, Pieces, Pieces]:
    """(train, validation, test) chorales: the demo's 51 training and 9 held-out (test) chorales and the 15
    after them (validation), the split of ``steerdiff.music.prior`` and of the music benchmark."""
    every = bach_chorales(config or RollConfig(**DEMO_ROLL), DEMO_PIECES + VAL_PIECES, progress=False)
    train, test = split(every.subset(range(DEMO_PIECES)), 0.15, 0)
    return train, every.subset(range(DEMO_PIECES, len(every))), test


@dataclass
class _Context:
    """What ``score`` needs of one instance: the target attributes per rule."""

    targets: dict[str, torch.Tensor]  # rule name -> (1, D)
    reference: torch.Tensor  # the held-out window (C, P, T) the targets come from


class RuleTask(GuidedTask):
    """Steer the prior toward the rule attributes of held-out windows (see the module notes).

    ``denoiser``: the prior (``denoiser(x, sigma) -> x0-hat`` on rolls (B, C, P, length) in model space);
    ``rules``: rule names (``RULE_SETS``); ``val_pieces`` / ``test_pieces``: where the targets come from;
    ``steps``: sampler steps. ``settings`` override the matrix run's settings for this task.
    """

    paper_family = "scg"
    ensemble_output = "member"  # EnKG: one member per piece (the mean of rolls decodes to a majority vote)
    lower_is_better = True
    solver = "ddpm"

    def __init__(
        self,
        denoiser,
        roll: RollConfig,
        length: int,
        rules: Sequence[str],
        val_pieces: Pieces,
        test_pieces: Pieces,
        steps: int = 16,
        name: str | None = None,
        settings: dict | None = None,
        device="cpu",
        seed: int = 0,
    ):
        rules = tuple(rules)
        unknown = [r for r in rules if r not in _RULES]
        if not rules or unknown:
            raise ValueError(f"unknown rule(s) {unknown or rules!r}; choose from {sorted(_RULES)}")
        if len(set(rules)) != len(rules):
            raise ValueError(f"each rule may appear once, got {list(rules)}")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer (sampler steps), got {steps!r}")
        if length < 1 or length % roll.steps_per_bar:
            raise ValueError(
                f"length must be a whole number of bars of {roll.steps_per_bar} steps, got {length}"
            )
        for which, pieces in (("val_pieces", val_pieces), ("test_pieces", test_pieces)):
            if pieces.config != roll:
                raise ValueError(
                    f"{which} use another roll layout than the prior; load them with its RollConfig"
                )
        key = next((k for k, v in RULE_SETS.items() if v == rules), "+".join(rules))
        self.name = name or _NAMES.get(key, "music " + " + ".join(rules))
        self.metric = _METRICS.get(key, "sum of the rules' losses, each / its within-chorale spread")
        self.settings = dict(settings or {})
        self.device = torch.device(device)
        self.roll, self.length, self.steps, self.seed = roll, int(length), steps, seed
        self._denoiser = denoiser
        self.rules: dict[str, Rule] = {r: _RULES[r](roll) for r in rules}
        self._pieces = {"validation": val_pieces, "test": test_pieces}
        self._windows = {s: windows(p, self.length).float() for s, p in self._pieces.items()}
        self._cache: dict = {}
        self.spread = self._within_piece_spread(val_pieces)  # rule -> s^2 per attribute entry
        self.loss_scale = {r: self._loss_scale(r) for r in rules}  # rule -> loss at the within-chorale spread

    # ------------------------------------------------------------------------------------------ attributes
    def features(self, name: str, x: torch.Tensor, relaxed: bool = False) -> torch.Tensor:
        """Rule ``name``'s attribute vector (B, D) of rolls ``x``; chords one-hot per bar (B, bars * 8)."""
        rule = self.rules[name]
        a = rule.attribute(x, relaxed)
        if isinstance(rule, ChordProgression):
            return torch.nn.functional.one_hot(a.long(), _DEGREES).flatten(1).to(x.dtype)
        return a

    def rule_losses(self, x: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each rule's own loss (B,) on the decoded rolls ``x`` against the targets (1, D)."""
        out = {}
        for name, rule in self.rules.items():
            a = rule.attribute(x)
            out[name] = rule.loss(a, targets[name].to(a.device, a.dtype).expand_as(a))
        return out

    def task_loss(self, x: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """The metric per sample (B,): the rule's loss, or the sum of normalised losses of several rules."""
        losses = self.rule_losses(x, targets)
        if len(losses) == 1:
            return next(iter(losses.values()))
        return sum(v / self.loss_scale[k] for k, v in losses.items())

    def _within_piece_spread(self, pieces: Pieces) -> dict[str, float]:
        """Per rule: the mean squared difference per attribute entry between consecutive non-overlapping
        windows of the same piece."""
        pairs = []
        for i in range(len(pieces)):
            roll = pieces.rolls[i]
            if roll.shape[-1] >= 2 * self.length:
                w = windows(pieces.subset([i]), self.length, hop=self.length, min_notes=0).float()
                if w.shape[0] >= 2:
                    pairs.append((w[:-1], w[1:]))
        if not pairs:
            raise ValueError(
                f"no validation piece is two windows ({2 * self.length} steps) long, so the rules' within-piece "
                f"spread cannot be measured; give longer validation pieces or a shorter length"
            )
        a, b = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
        out = {}
        for name in self.rules:
            s2 = float((self.features(name, a) - self.features(name, b)).pow(2).mean())
            out[name] = max(s2, 1e-6)
        self._pairs = (a, b)
        return out

    def _loss_scale(self, name: str) -> float:
        a, b = self._pairs
        rule = self.rules[name]
        return max(float(rule.loss(rule.attribute(a), rule.attribute(b)).mean()), 1e-6)

    def noise_std(self) -> float:
        """EnKG's measurement noise: the within-chorale spread of the single rule; 1 for several rules (their
        attributes are divided by their spreads)."""
        return self.spread[next(iter(self.rules))] ** 0.5 if len(self.rules) == 1 else 1.0

    def _weights(self) -> dict[str, float]:
        if len(self.rules) == 1:
            return {next(iter(self.rules)): 1.0}
        return {r: 1.0 / self.spread[r] ** 0.5 for r in self.rules}

    # ------------------------------------------------------------------------------------- the protocol
    def prior(self):
        return self._denoiser, (self.roll.num_channels, self.roll.num_pitches, self.length)

    def sigmas(self):
        return default_sigmas(self.steps)

    def instances(self, split: str, count: int) -> list[tuple[Target, _Context]]:
        if split not in self._windows:
            raise ValueError(f"split must be 'validation' or 'test', got {split!r}")
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, got {count!r}")
        pool = self._windows[split]
        if count > pool.shape[0]:
            raise ValueError(
                f"{split} asks for {count} instances but its pieces have only {pool.shape[0]} windows of "
                f"{self.length} steps; ask for fewer"
            )
        if (split, count) not in self._cache:
            gen = torch.Generator().manual_seed(self.seed + (1 if split == "validation" else 2))
            refs = pool[torch.randperm(pool.shape[0], generator=gen)[:count]]
            self._cache[split, count] = [self.instance(ref) for ref in refs]
        return self._cache[split, count]

    def instance(self, reference: torch.Tensor) -> tuple[Target, _Context]:
        """The guidance target and scoring context of one reference window (C, P, length) in model space."""
        ref = reference[None].float()
        check_batch(ref, self.roll, "the reference window")
        targets = {r: rule.attribute(ref) for r, rule in self.rules.items()}
        weights = self._weights()
        dev = self.device
        observation = torch.cat([self.features(r, ref)[0] * w for r, w in weights.items()]).to(dev)
        dev_targets = {r: t.to(dev) for r, t in targets.items()}

        scale = self.loss_scale[next(iter(self.rules))] if len(self.rules) == 1 else 1.0

        def reward(x0):  # in units of the within-chorale loss: one range of SMC / tree strengths for all
            return -self.task_loss(x0, dev_targets) / scale

        def forward(x0):
            return torch.cat([self.features(r, x0) * w for r, w in weights.items()], dim=1)

        loss = None
        if all(rule.differentiable for rule in self.rules.values()):
            relaxed_targets = {r: self.features(r, ref).to(dev) for r in self.rules}

            def loss(x0):
                return sum(
                    (self.features(r, x0, relaxed=True) - relaxed_targets[r]).pow(2).sum(1)
                    / (2 * self.spread[r])
                    for r in self.rules
                )

        target = Target(
            loss=loss, reward=reward, forward=forward, observation=observation, noise_std=self.noise_std()
        )
        return target, _Context(targets, reference)

    def score(self, context: _Context, x: torch.Tensor) -> dict[str, float]:
        x = x.detach().float().cpu()
        out = {"loss": float(self.task_loss(x, context.targets).mean())}
        if len(self.rules) > 1:
            out.update({k: float(v.mean()) for k, v in self.rule_losses(x, context.targets).items()})
        return out

    def not_applicable(self, family: str, target: Target) -> str | None:
        if family == "dps" and target.loss is None:
            missing = [r for r, rule in self.rules.items() if not rule.differentiable]
            return f"no differentiable relaxation of the {', '.join(missing)} rule (key, root and chord are discrete)"
        if family == "inpainting":
            return "the target is a rule's attribute, no entries of the roll are observed"
        return super().not_applicable(family, target)


# ------------------------------------------------------------------------------------------------- priors
def quick_prior(pieces: Pieces | None = None, progress: bool = False, **overrides) -> MusicPipeline:
    """A tiny U-Net trained in seconds on chorale windows (``QUICK`` settings), cached under
    ``$STEERDIFF_CACHE/music`` keyed by its settings and data, so a second call only loads it."""
    s = {**QUICK, **overrides}
    if pieces is None:
        pieces = chorale_splits()[0].subset(range(s["pieces"]))
    key_src = json.dumps([s, pieces.config.to_dict(), pieces.names], sort_keys=True)
    folder = cache_dir("music", f"matrix_quick_{hashlib.sha1(key_src.encode()).hexdigest()[:12]}") / "model"
    if trained_steps(folder) >= s["train_steps"]:
        return MusicPipeline.from_pretrained(folder, device="cpu")
    pipe = MusicPipeline.train(
        pieces,
        bars=s["bars"],
        transpose=0,
        train_steps=s["train_steps"],
        batch_size=s["batch_size"],
        channels=s["channels"],
        seed=s["seed"],
        device="cpu",
        progress=progress,
        data_info={"source": "chorales", "purpose": "guidance matrix, quick"},
    )
    pipe.save_pretrained(folder)
    return pipe


def full_prior(device="cpu", progress: bool = False) -> tuple[MusicPipeline, str]:
    """The domain's prior and its description: the model ``python -m steerdiff.music.train_prior`` chose
    (every chorale outside the test and validation ones), or, when that is not cached, the demo's U-Net
    (trained now with the demo's recipe if it is not cached either)."""
    chosen = prior_run_dir() / "model"
    if trained_steps(chosen) > 0:
        return MusicPipeline.from_pretrained(chosen, device=device), f"prior, {trained_steps(chosen)} steps"
    pipe, _ = ensure_demo_model(demo_run_dir(DEMO_PIECES), DEMO_PIECES, device=device, progress=progress)
    return pipe, f"demo U-Net, {pipe.info.get('training', {}).get('steps', '?')} steps"


# quick: the U-Net costs about a hundred times a toy task's network call, and DPS spends its budget on as many
# sequential forward + backward passes, so the quick run takes 4 sampler steps and budgets of 16 and 64 to keep
# the four tasks within seconds; full: the benchmark's 16 steps and budgets of 64 and 256, few samples per target
# the quick run keeps two rows: chords (the SCG paper's headline rule, no relaxation) and histogram + density
# (both relaxations, so DPS runs); the full run has all four
QUICK_TASKS = ("chord_progression", "multi")
QUICK_SETTINGS = {"budgets": (16, 64), "num_samples": 2, "validation": 1, "test": 2, "tune_budget": 2}
QUICK_STEPS = 4
FULL_SETTINGS = {"num_samples": 2, "validation": 2, "test": 6, "tune_budget": 3}
FULL_STEPS = 16


def guided_tasks(quick: bool = False) -> list[RuleTask]:
    """The music tasks on the domain's prior (16 sampler steps, 4 bars): pitch histogram, note density, chord
    progression, histogram + density; ``quick``: chords and histogram + density on a tiny U-Net (4 steps,
    2 bars)."""
    try:
        _, val, test = chorale_splits()
        source = "chorales"
    except ImportError:  # neither music21 nor cached chorales: made-up pieces keep the tasks runnable
        pieces = synthetic_pieces(RollConfig(**DEMO_ROLL), num_pieces=24, num_bars=8)
        train, rest = split(pieces, 0.5, 0)
        val, test = split(rest, 0.5, 0)
        source = "synthetic pieces"
    if quick:
        pipe = quick_prior(None if source == "chorales" else train)
        steps, settings = QUICK_STEPS, QUICK_SETTINGS
    else:
        pipe, _ = full_prior()
        steps, settings = FULL_STEPS, FULL_SETTINGS
    if pipe.roll != val.config:
        raise ValueError(
            "the prior's roll layout differs from the chorales'; retrain it with the demo's layout"
        )
    length = pipe.length if not quick else QUICK["bars"] * pipe.roll.steps_per_bar
    suffix = "" if source == "chorales" else f" ({source})"
    return [
        RuleTask(
            pipe.denoiser,
            pipe.roll,
            length,
            rules,
            val,
            test,
            steps=steps,
            name=_NAMES[key] + suffix,
            settings=settings,
            device=pipe.device,
        )
        for key, rules in RULE_SETS.items()
        if not quick or key in QUICK_TASKS
    ]
