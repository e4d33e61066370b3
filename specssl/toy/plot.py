"""The 2-D study's figure: one column per setting, embedding ``Z`` on top, ``Ẑ`` below.

Matplotlib with the non-interactive Agg backend (safe on headless machines); the global
backend is not switched — the figure is drawn on an explicit Agg canvas.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from specssl.toy.study import COLLAPSE_THRESHOLD, GRID_SIDE, ToyResult

# tab20c comes in hue groups of 4 shades: hue = grid column (the x the views agree on),
# shade = grid row (the y the strong jitter along y scrambles). Label = 4 * column + row.
_PALETTE = colormaps["tab20c"]


def _colours(labels: torch.Tensor) -> list[tuple[float, float, float, float]]:
    return [_PALETTE(int(label) % 20) for label in labels]


def _scatter(ax: Axes, points: torch.Tensor, colours: list, title: str, alarm: bool) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9, color="tab:red" if alarm else "black")
    if not bool(torch.isfinite(points).all()):
        ax.text(0.5, 0.5, "diverged", ha="center", va="center", transform=ax.transAxes)
        return
    pts = points.detach().cpu().double().numpy()
    ax.scatter(pts[:, 0], pts[:, 1], c=colours, s=3, linewidths=0, rasterized=True)
    ax.set_aspect("equal", adjustable="datalim")


def plot_toy_study(
    results: Sequence[ToyResult],
    inputs: torch.Tensor | None = None,
    view: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> Figure:
    """Draw the study as a ``2 x (k [+1])`` grid and return the (Agg-backed) figure.

    Args:
        results: the ``k`` settings' results; column ``j`` shows ``results[j].z`` on top and
            ``results[j].zhat`` below, titled with the condition indicators (red when below
            :data:`~specssl.toy.study.COLLAPSE_THRESHOLD`).
        inputs, view: optional ``(n, 2)`` input points and one augmented view of them, drawn
            as an extra first column (both coloured by ``labels``).
        labels: ``(n,)`` blob labels for ``inputs``/``view`` (default: ``results[0].labels``).
    """
    if not results:
        raise ValueError("plot_toy_study needs at least one result")
    extra = int(inputs is not None)
    cols = len(results) + extra
    fig = Figure(figsize=(1.9 * cols, 4.3), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, cols, squeeze=False)
    if inputs is not None:
        colours = _colours(labels if labels is not None else results[0].labels)
        _scatter(axes[0, 0], inputs, colours, "input x", alarm=False)
        if view is not None:
            _scatter(axes[1, 0], view, colours, "one view of x", alarm=False)
        else:
            axes[1, 0].set_axis_off()
        axes[0, 0].set_ylabel("data", fontsize=9)
    for j, result in enumerate(results, start=extra):
        colours = _colours(result.labels)
        _scatter(
            axes[0, j],
            result.z,
            colours,
            f"{result.setting}\n$c^{{-1}}(Z)$ = {result.condition_z:.3f}",
            alarm=not (result.condition_z >= COLLAPSE_THRESHOLD),
        )
        _scatter(
            axes[1, j],
            result.zhat,
            colours,
            f"$c^{{-1}}(\\hat{{Z}})$ = {result.condition_zhat:.3f}",
            alarm=not (result.condition_zhat >= COLLAPSE_THRESHOLD),
        )
    axes[0, extra].set_ylabel("embedding $Z$", fontsize=9)
    axes[1, extra].set_ylabel(r"transformed $\hat{Z}$", fontsize=9)
    handles = [
        Line2D([], [], ls="", marker="o", color=_PALETTE(GRID_SIDE * c), label=f"column {c + 1}")
        for c in range(GRID_SIDE)
    ]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=GRID_SIDE,
        fontsize=8,
        title="input column (hue; shade = row)",
        title_fontsize=8,
        frameon=False,
    )
    fig.suptitle(
        r"2-D toy study: condition indicator $c^{-1} = \lambda_{min}/\lambda_{max}$ "
        f"(red: < {COLLAPSE_THRESHOLD:g}, collapsed)",
        fontsize=10,
    )
    return fig


def save_toy_figure(
    results: Sequence[ToyResult],
    path: str | Path,
    inputs: torch.Tensor | None = None,
    view: torch.Tensor | None = None,
    dpi: int = 110,
) -> Path:
    """:func:`plot_toy_study` saved as a PNG at ``path`` (parent directory must exist)."""
    path = Path(path)
    fig = plot_toy_study(results, inputs, view)
    fig.savefig(path, dpi=dpi, format="png")
    return path
