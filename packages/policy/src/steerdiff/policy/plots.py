"""PNG plots (matplotlib, Agg): return curves and real-vs-synthetic state trajectories."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from steerdiff.core.io import save_figure

__all__ = ["episode_windows", "plot_likelihood_vs_error", "plot_return_curves", "plot_state_trajectories"]


def episode_windows(dataset, max_windows: int = 8) -> np.ndarray:
    """The first rows of the ``max_windows`` longest episodes (the first ones among equals) as (n, L, obs_dim)
    state sequences (L: the shortest episode shown), for :func:`plot_state_trajectories`."""
    bounds = dataset.episode_bounds()
    order = sorted(range(len(bounds)), key=lambda i: (-(bounds[i][1] - bounds[i][0]), i))[:max_windows]
    bounds = [bounds[i] for i in sorted(order)]
    length = min(b - a for a, b in bounds)
    return np.stack([dataset.observations[a : a + length] for a, _ in bounds])


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    fig.tight_layout()
    return Path(save_figure(fig, path))


def plot_return_curves(
    curves: dict[str, list[tuple[int, float]]], path, title: str = "evaluation return"
) -> Path:
    """``curves``: label -> [(update, return), ...]."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in curves.items():
        if pts:
            x, y = zip(*pts, strict=True)
            ax.plot(x, y, marker="o", label=label)
    ax.set_xlabel("agent updates")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_state_trajectories(
    real: np.ndarray, synthetic: dict[str, np.ndarray], path, dims: int = 3, names: list[str] | None = None
) -> Path:
    """``real`` and each synthetic entry: (num_windows, L, obs_dim) states; one panel per state dimension.
    Real sequences are cut to the longest synthetic window, so both share the time axis."""
    plt = _figure()
    if synthetic:
        real = real[:, : max(w.shape[1] for w in synthetic.values())]
    dims = min(dims, real.shape[-1])
    fig, axes = plt.subplots(1, dims, figsize=(4 * dims, 3.2), squeeze=False)
    colors = ["tab:orange", "tab:green", "tab:red", "tab:purple"]
    for d in range(dims):
        ax = axes[0, d]
        for w in real[:8]:
            ax.plot(w[:, d], color="tab:blue", alpha=0.5, lw=1)
        for syn, c in zip(synthetic.values(), colors, strict=False):
            for w in syn[:8]:
                ax.plot(w[:, d], color=c, alpha=0.5, lw=1)
        ax.set_title(names[d] if names else f"obs[{d}]")
        ax.set_xlabel("step")
    handles = [plt.Line2D([], [], color="tab:blue", label="real")]
    handles += [plt.Line2D([], [], color=c, label=k) for k, c in zip(synthetic, colors, strict=False)]
    axes[0, -1].legend(handles=handles, loc="best", fontsize=8)
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_likelihood_vs_error(points: dict[str, list[tuple[float, float]]], path) -> Path:
    """``points``: label -> [(target-policy log-likelihood, dynamics error), ...] (the paper's Fig. 4)."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, pts in points.items():
        x, y = zip(*pts, strict=True)
        ax.plot(x, y, marker="o", label=label)
    ax.set_xlabel("target-policy log-likelihood of actions")
    ax.set_ylabel("dynamics error (MSE)")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    out = _save(fig, path)
    plt.close(fig)
    return out
