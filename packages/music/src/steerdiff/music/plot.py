"""Piano-roll pictures (matplotlib, Agg): one panel per piece, onsets darker than sustains, bar lines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from steerdiff.core.io import save_figure

from .roll import RollConfig, note_masks

__all__ = ["plot_rolls"]


def plot_rolls(
    x: torch.Tensor, config: RollConfig, path, titles: Sequence[str] | None = None, cols: int = 4
) -> Path:
    """Write a PNG of rolls (B, C, P, T) in model space to ``path`` (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    starts, sounding = note_masks(x.detach().cpu().float(), config)
    img = (sounding.float() * 0.55 + starts.float() * 0.45).numpy()
    b = img.shape[0]
    cols = min(cols, b)
    rows = (b + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= b:
            continue
        ax.imshow(
            img[i], origin="lower", aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest"
        )
        for t in range(config.steps_per_bar, img.shape[-1], config.steps_per_bar):
            ax.axvline(t - 0.5, color="tab:blue", lw=0.5, alpha=0.5)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=90)
    finally:
        plt.close(fig)
