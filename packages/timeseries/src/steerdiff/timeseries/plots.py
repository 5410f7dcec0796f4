"""Fan charts: the history, the truth and the forecast's 50 % and 90 % bands around the median."""

from __future__ import annotations

from pathlib import Path

import torch

from steerdiff.core.io import save_figure

__all__ = ["fan_chart"]


def fan_chart(
    path,
    history: torch.Tensor,
    samples: torch.Tensor,
    future: torch.Tensor | None = None,
    titles=None,
    max_panels: int = 4,
    show_history: int | None = None,
) -> Path:
    """Write a PNG of up to ``max_panels`` windows: history (N, T), samples (N, S, H), future (N, H)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(max_panels, samples.shape[0])
    hist_len = history.shape[1] if show_history is None else min(show_history, history.shape[1])
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.4 * n), squeeze=False)
    t_hist = torch.arange(-hist_len, 0)
    t_fut = torch.arange(samples.shape[2])
    q = torch.quantile(
        samples[:n].double(), torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64), dim=1
    )
    for i in range(n):
        ax = axes[i, 0]
        ax.plot(t_hist, history[i, -hist_len:], color="black", lw=1, label="history")
        ax.fill_between(t_fut, q[0, i], q[4, i], color="tab:blue", alpha=0.2, label="90 %")
        ax.fill_between(t_fut, q[1, i], q[3, i], color="tab:blue", alpha=0.4, label="50 %")
        ax.plot(t_fut, q[2, i], color="tab:blue", lw=1.5, label="median")
        if future is not None:
            ax.plot(t_fut, future[i], color="tab:red", lw=1, label="truth")
        ax.axvline(-0.5, color="grey", lw=0.5, ls="--")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    axes[0, 0].legend(loc="upper left", fontsize=7, ncol=5)
    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=100)
    finally:
        plt.close(fig)
