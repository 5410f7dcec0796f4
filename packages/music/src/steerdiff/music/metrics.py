"""Quality metrics: musical attributes per piece and the overlapping area (OA) of their distributions.

OA (Yang & Lerch 2020, mgeval; used by the SCG paper): for one attribute, fit a Gaussian KDE to its values
over the generated set and over the real set; OA = integral of min(p_gen, p_real), 1 for identical
distributions, 0 for disjoint ones. Attributes are read from the decoded rolls (the notes the MIDI file would
hold).
"""

from __future__ import annotations

import numpy as np
import torch

from .roll import RollConfig, note_masks

__all__ = ["ATTRIBUTES", "attributes", "overlapping_area", "oa_table", "voice_counts", "voice_realism"]

ATTRIBUTES = (
    "used_pitches",
    "pitch_range",
    "polyphony",
    "notes_per_bar",
    "mean_duration",
    "mean_ioi",
    "pc_entropy",
)


def attributes(x: torch.Tensor, config: RollConfig) -> dict[str, torch.Tensor]:
    """Per-piece attributes (B,) of rolls in model space. Silent pieces get 0 everywhere.

    used_pitches: distinct sounding pitches; pitch_range: highest - lowest sounding pitch (semitones);
    polyphony: mean number of sounding pitches over steps where something sounds; notes_per_bar;
    mean_duration and mean_ioi (inter-onset interval between distinct onset steps) in grid steps;
    pc_entropy: entropy (bits) of the duration-weighted pitch-class histogram.
    """
    starts, sounding = note_masks(x, config)
    s, a = starts.float(), sounding.float()
    b, p, t = a.shape
    rows = torch.arange(p, device=x.device)
    used = a.amax(-1)  # (B, P)
    low = torch.where(used > 0, rows, p).amin(1)
    high = torch.where(used > 0, rows, -1).amax(1)
    n_notes = s.sum((1, 2))
    active_steps = (a.sum(1) > 0).float().sum(1)
    onset_steps = s.amax(1)  # (B, T)
    steps = torch.arange(t, device=x.device, dtype=torch.float32)
    first = torch.where(onset_steps > 0, steps, float(t)).amin(1)
    last = torch.where(onset_steps > 0, steps, -1.0).amax(1)
    n_on = onset_steps.sum(1)
    pc = torch.nn.functional.one_hot((rows + config.pitch_low) % 12, 12).float()
    hist = a.sum(-1) @ pc
    hist = hist / hist.sum(1, keepdim=True).clamp_min(1e-8)
    entropy = -(hist * torch.log2(hist.clamp_min(1e-12))).sum(1)
    return {
        "used_pitches": used.sum(1),
        "pitch_range": (high - low).clamp_min(0).float(),
        "polyphony": a.sum((1, 2)) / active_steps.clamp_min(1),
        "notes_per_bar": n_notes / (t / config.steps_per_bar),
        "mean_duration": a.sum((1, 2)) / n_notes.clamp_min(1),
        "mean_ioi": torch.where(n_on > 1, (last - first) / (n_on - 1).clamp_min(1), torch.zeros_like(n_on)),
        "pc_entropy": entropy,
    }


def overlapping_area(a, b, grid_size: int = 512) -> float:
    """OA of two 1-D samples' Gaussian KDEs (Scott's bandwidth, floored so constant samples still work)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.size < 1 or b.size < 1:
        raise ValueError("overlapping_area needs at least one value on each side")
    both = np.concatenate([a, b])
    spread = max(both.max() - both.min(), 1e-3)

    def bandwidth(v):
        return max(v.std(ddof=1) if v.size > 1 else 0.0, 0.01 * spread) * v.size ** (-1 / 5)

    ha, hb = bandwidth(a), bandwidth(b)
    lo, hi = both.min() - 4 * max(ha, hb), both.max() + 4 * max(ha, hb)
    grid = np.linspace(lo, hi, grid_size)

    def kde(v, h):
        z = (grid[:, None] - v[None]) / h
        return np.exp(-0.5 * z**2).sum(1) / (v.size * h * np.sqrt(2 * np.pi))

    return float(np.minimum(kde(a, ha), kde(b, hb)).sum() * (grid[1] - grid[0]))


def oa_table(generated: torch.Tensor, real: torch.Tensor, config: RollConfig) -> dict[str, float]:
    """OA per attribute between generated and real rolls (both model space), plus their mean under "mean"."""
    ga, ra = attributes(generated, config), attributes(real, config)
    out = {k: overlapping_area(ga[k].cpu().numpy(), ra[k].cpu().numpy()) for k in ATTRIBUTES}
    out["mean"] = float(np.mean([out[k] for k in ATTRIBUTES]))
    return out


def voice_counts(x: torch.Tensor, config: RollConfig) -> torch.Tensor:
    """(B, T) number of sounding notes on every step of rolls (B, C, P, T) in model space."""
    return note_masks(x, config)[1].sum(1)


def voice_realism(x: torch.Tensor, real: torch.Tensor, config: RollConfig) -> dict:
    """The share of steps on which exactly the data's typical number of notes sounds (``typical``: the most
    common count over the real rolls' steps), for generated rolls ``x`` and for the real rolls, with the share
    of steps with more notes than that and the mean length of a note in grid steps."""
    rc, gc = voice_counts(real, config), voice_counts(x, config)
    typical = int(torch.bincount(rc.flatten()).argmax())

    def stats(rolls, counts):
        starts, sounding = note_masks(rolls, config)
        return {
            "typical": float((counts == typical).float().mean()),
            "more": float((counts > typical).float().mean()),
            "fewer": float((counts < typical).float().mean()),
            "note_length": float(sounding.sum() / starts.sum().clamp_min(1)),
        }

    return {"typical_voices": typical, "generated": stats(x, gc), "real": stats(real, rc)}
