"""Plots of spectra (matplotlib, Agg backend: works headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch


def plot_spectra(
    snapshots: Sequence[tuple[int | str, torch.Tensor | None, torch.Tensor | None]],
    path: str | Path,
    *,
    title: str = "",
    legend_title: str = "epoch",
) -> Path:
    """Log-scale eigenvalue curves of ``Z`` (left) and ``Ẑ`` (right), one line per snapshot.

    ``snapshots``: ``(label, eigenvalues of Z or None, eigenvalues of Ẑ or None)``, eigenvalues
    descending. Lines are coloured from light to dark in snapshot order (the INTL paper's
    Figure 3 (a)/(b) when labels are epochs; ``legend_title`` names what the labels are).
    Zero eigenvalues are drawn at the floor 1e-12.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    cmap = plt.get_cmap("viridis")
    n = max(1, len(snapshots) - 1)
    for i, (label, z, zhat) in enumerate(snapshots):
        color = cmap(i / n)
        for ax, evals in zip(axes, (z, zhat), strict=True):
            if evals is not None:
                values = evals.detach().double().clamp_min(1e-12).cpu().numpy()
                ax.plot(range(1, len(values) + 1), values, color=color, label=str(label))
    for ax, name in zip(axes, ("embedding Z", "transformed output Ẑ"), strict=True):
        ax.set_yscale("log")
        ax.set_xlabel("eigenvalue index (descending)")
        ax.set_ylabel("eigenvalue")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(title=legend_title, fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
