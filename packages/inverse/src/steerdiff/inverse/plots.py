"""Field plots: truth, observation, estimate, error and ensemble spread side by side (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import torch

from steerdiff.core.io import save_figure

__all__ = ["plot_solution"]


def plot_solution(
    path,
    truth: torch.Tensor | None,
    y: torch.Tensor,
    estimate: torch.Tensor,
    ensemble: torch.Tensor,
    title: str = "",
) -> Path:
    """One row per panel type for the first problem instance; writes a PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    if truth is not None:
        panels.append(("truth", truth[0, 0], "RdBu_r"))
    panels += [
        ("observation", y[0].reshape(-1, y.shape[-1]) if y.ndim > 2 else y[0][None], "RdBu_r"),
        ("estimate (mean)", estimate[0, 0], "RdBu_r"),
    ]
    if truth is not None:
        panels.append(("|error|", (estimate[0, 0] - truth[0, 0]).abs(), "magma"))
    panels.append(("ensemble std", ensemble[0].std(0)[0], "viridis"))
    lim = float(truth[0].abs().max()) if truth is not None else float(estimate[0].abs().max())
    fig, axes = plt.subplots(1, len(panels), figsize=(3.1 * len(panels), 3.2))
    for ax, (name, img, cmap) in zip(axes, panels, strict=True):
        kw = {"vmin": -lim, "vmax": lim} if cmap == "RdBu_r" else {}
        im = ax.imshow(img.detach().cpu().float().numpy(), cmap=cmap, origin="lower", **kw)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=90)
    finally:
        plt.close(fig)
