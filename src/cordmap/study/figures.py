"""Box plots of group comparisons, one panel per metric, as in the published Fig. 2.

Each panel shows the two groups' box plots (median, quartiles, whiskers at 1.5 IQR) with
every participant as a jittered point, and the test's p-value over a bracket. Figures
are drawn with matplotlib's Agg canvas (no display, no global pyplot state) and returned
as PNG bytes.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cordmap.study.stats import Comparison

COLOURS = ("#1f77b4", "#ff7f0e")
LABELS = {
    "coverage": "enlargement coverage",
    "planned_coverage": "planned coverage",
    "surgery_time": "surgery time",
}


def format_p(p: float) -> str:
    """A p-value as papers print it: "p < 0.001" or "p = 0.013"."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def box_plots(
    comparisons: list[Comparison],
    values: list[dict[str, list[float]]],
    *,
    seed: int = 0,
    dpi: int = 120,
) -> bytes:
    """PNG of one box-plot panel per comparison; `values[i]` maps group -> values."""
    rng = np.random.default_rng(seed)
    figure = Figure(figsize=(3.2 * len(comparisons), 3.6), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(comparisons), squeeze=False)[0]
    for ax, comparison, groups in zip(axes, comparisons, values):
        names = [g.name for g in comparison.groups]
        data = [np.asarray(groups[name], float) for name in names]
        boxes = ax.boxplot(
            data, widths=0.5, patch_artist=True, showfliers=False, medianprops={"color": "black"}
        )
        ax.set_xticks([1, 2], [f"{n}\n(n={len(d)})" for n, d in zip(names, data)])
        for patch, colour in zip(boxes["boxes"], COLOURS):
            patch.set_facecolor(colour)
            patch.set_alpha(0.35)
        for position, (d, colour) in enumerate(zip(data, COLOURS), start=1):
            ax.scatter(
                position + rng.uniform(-0.12, 0.12, len(d)),
                d,
                s=12,
                color=colour,
                zorder=3,
                linewidths=0,
            )
        _bracket(ax, np.concatenate(data), format_p(comparison.p_value))
        label = LABELS.get(comparison.metric, comparison.metric.replace("_", " "))
        ax.set_ylabel(f"{label} ({comparison.unit})" if comparison.unit else label)
        ax.spines[["top", "right"]].set_visible(False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _bracket(ax, values: np.ndarray, text: str) -> None:
    top, span = float(values.max()), float(np.ptp(values)) or 1.0
    y, tick = top + 0.08 * span, 0.03 * span
    ax.plot([1, 1, 2, 2], [y, y + tick, y + tick, y], color="black", linewidth=1)
    ax.text(1.5, y + 1.5 * tick, text, ha="center", va="bottom")
    ax.set_ylim(top=y + 0.2 * span)
