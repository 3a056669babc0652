"""The studies' figures, drawn the same way everywhere and written reproducibly: the same
runs give the same PNG bytes (no software/date metadata), so `make report` on a clone
leaves `git status` clean."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the report runs in make, CI and tests
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter  # noqa: E402

from alexnet_lab.analysis.runs import Run  # noqa: E402
from alexnet_lab.analysis.stats import Paired  # noqa: E402

DPI = 100
RATIO_TICKS = (0.1, 0.2, 0.3, 0.5, 1, 2, 3, 6, 10, 20)  # a ratio axis's labelled values
# No library version or timestamp in the file: only what is drawn decides its bytes.
PNG_METADATA = {"Software": None}
STYLE = {
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "alexnet-lab",
}


def figure(ncols: int, nrows: int = 1, width: float = 4.2, height: float = 3.4, **kw):
    with plt.rc_context(STYLE):
        return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kw)


def panels(count: int, per_row: int = 3, **kw):
    """A figure of `count` panels, `per_row` to a row: (fig, the panels in order, the first
    panel of each row, which carries the y label)."""
    fig, axes = figure(min(count, per_row), math.ceil(count / per_row), squeeze=False, **kw)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count], [row[0] for row in axes]


def title(fig, text: str) -> None:
    """A figure title wrapped to the figure's width."""
    chars = int(fig.get_figwidth() * 13)
    fig.suptitle(textwrap.fill(text, chars), fontsize=9)


def save(fig, path: Path) -> None:
    with plt.rc_context(STYLE):
        fig.tight_layout()
        # A figure-level legend sits outside the panels: the file grows to hold it.
        tight = "tight" if fig.legends else None
        fig.savefig(path, dpi=DPI, metadata=PNG_METADATA, bbox_inches=tight)
    plt.close(fig)


def curve(ax, runs: Sequence[Run], column: str, label: str, **style) -> None:
    """Mean over seeds with a ± 1 SD band (the report's one spread convention), over the
    epochs where the column was logged; accuracies are drawn as error in %. A training
    column is each epoch's running mean, so it is drawn at the epoch's middle."""
    if not runs:
        return
    length = min(r.epochs for r in runs)
    if length == 0:
        return
    values = np.stack([r.history[column].to_numpy(dtype=float)[:length] for r in runs])
    if column.endswith("acc"):
        values = (1.0 - values) * 100
    epochs = runs[0].history["epoch"].to_numpy(dtype=float)[:length]
    if column.startswith("train"):
        epochs = epochs - 0.5
    logged = ~np.isnan(values).any(0)
    if not logged.any():
        return
    values, epochs = values[:, logged], epochs[logged]
    mean = values.mean(0)
    marker = "o" if logged.sum() == 1 else None
    line = ax.plot(epochs, mean, label=f"{label} (n={len(runs)})", marker=marker, **style)[0]
    if len(runs) > 1:
        sd = values.std(0, ddof=1)
        ax.fill_between(epochs, mean - sd, mean + sd, color=line.get_color(), alpha=0.15)


def paired_panel(
    ax, paired: Paired, paper_effect: float, title: str, scale: float = 100.0, log: bool = False
) -> None:
    """Every seed's difference as a dot, the mean with its 95% interval as a bar, 0 and the
    paper's effect as lines. log: the values are log ratios, drawn as ratios."""
    convert = np.exp if log else (lambda v: np.asarray(v) * scale)
    if paired.n:
        jitter = np.linspace(-0.08, 0.08, paired.n)
        ax.scatter(jitter, convert(np.array(paired.differences)), s=18, color="C0", zorder=3)
    if paired.n >= 2:
        mean, low, high = (float(convert(v)) for v in (paired.mean, paired.low, paired.high))
        ax.errorbar(
            [0.25], [mean], yerr=[[mean - low], [high - mean]], fmt="s", color="black", capsize=4
        )
    ax.axhline(float(convert(0.0)), color="grey", linewidth=0.8)
    ax.axhline(float(convert(paper_effect)), color="C3", linestyle="--", linewidth=0.8)
    ax.text(0.4, float(convert(paper_effect)), " paper", color="C3", va="center", fontsize=8)
    if log:
        ax.set_yscale("log")
        ratio = FuncFormatter(lambda v, _: f"{v:g}×")
        ax.yaxis.set_major_formatter(ratio)
        ax.yaxis.set_minor_formatter(ratio)
    ax.set_xlim(-0.3, 0.6)
    ax.set_xticks([])
    ax.set_title(title, fontsize=8)


def speedup_panel(ax, levels, paper_ratio: float, paper_level: str, title: str) -> None:
    """Claim 1's per-seed ratios at several training-error levels, one column each.

    levels: (level label, Judgement of the log ratios, the seeds whose ratio is a bound,
    the bound's direction or None). A seed whose ratio rests on a censored run is an open
    triangle pointing the way its true ratio lies; a bounded mean has a one-sided bar. The
    paper's ratio is drawn only over the level it was measured at."""
    for x, (label, judged, bounded, bound) in enumerate(levels):
        paired = judged.paired
        if paired.n:
            jitter = x + np.linspace(-0.08, 0.08, paired.n)
            ratios = np.exp(np.array(paired.differences))
            cut = np.array([s in bounded for s in paired.seeds])
            ax.scatter(jitter[~cut], ratios[~cut], s=18, color="C0", zorder=3)
            marker = "^" if (bound or 0) >= 0 else "v"
            ax.scatter(
                jitter[cut], ratios[cut], s=26, marker=marker, facecolors="none",
                edgecolors="C0", zorder=3,
            )  # fmt: skip
        if paired.n >= 2:
            mean, low, high = (math.exp(v) for v in (paired.mean, paired.low, paired.high))
            if bound:  # one-sided: only the limit on the bound's side means anything
                bar = [[mean - low], [0]] if bound > 0 else [[0], [high - mean]]
            else:
                bar = [[mean - low], [high - mean]]
            ax.errorbar([x + 0.25], [mean], yerr=bar, fmt="s", color="black", capsize=4)
        if label == paper_level:
            ax.hlines(paper_ratio, x - 0.3, x + 0.45, color="C3", linestyle="--", linewidth=0.8)
            ax.text(x + 0.45, paper_ratio, f" paper: {paper_ratio:g}×", color="C3", fontsize=8)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(FixedLocator(RATIO_TICKS))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(range(len(levels)), [f"to {label}" for label, *_ in levels])
    ax.set_xlim(-0.4, len(levels) - 0.2)
    ax.set_title(title, fontsize=8)


def speedup_key(fig) -> None:
    """The legend of speedup_panel's markers, below the panels."""
    dot = {"linestyle": "none", "color": "C0"}
    handles = [
        Line2D([], [], marker="o", label="a seed: both arms reached the level", **dot),
        Line2D(
            [],
            [],
            marker="^",
            markerfacecolor="none",
            label="a censored seed: a bound (its true ratio lies the way it points)",
            **dot,
        ),  # fmt: skip
        Line2D(
            [], [], marker="s", color="black", label="geometric mean, 95% CI (one-sided: a bound)"
        ),
        Line2D([], [], color="C3", linestyle="--", label="the paper's ratio, at its own level"),
    ]
    fig.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0), ncol=2)


def empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def finite_or_nan(values: Sequence[float]) -> list[float]:
    return [v if math.isfinite(v) else math.nan for v in values]
