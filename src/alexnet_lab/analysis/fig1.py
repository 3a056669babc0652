"""Claim 1 (Figure 1): how much faster ReLU trains than tanh, each at its own tuned lr.

Per condition (init x input scale) and seed, the measure is log(tanh epochs / ReLU epochs)
to a training-error level; its paired mean and 95% interval, shown as a ratio, go
through the verdict rule with the paper's 6x. A seed that never reached the level within
the run is censored: it enters at the run length (a bound), and the verdict is kept only
where that bound supports it (stats.bounded_verdict).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_lab.analysis import figures, lr_search, stats
from alexnet_lab.analysis.runs import Run, load_runs
from alexnet_lab.analysis.specs import (
    ACTIVATIONS,
    FIG1_CONDITIONS,
    FIG1_PAPER_RATIO,
    FIG1_PRIMARY,
    FIG1_THRESHOLDS,
    Fig1Condition,
    Scale,
)
from alexnet_lab.analysis.stats import Paired
from alexnet_lab.analysis.tables import (
    GENERATED,
    markdown_table,
    minutes,
    points,
    ratio_interval,
    replace_between,
    write_if_changed,
)

CHANCE = 0.9  # ten classes: the training error at epoch 0
PAPER_LOG_RATIO = math.log(FIG1_PAPER_RATIO)  # the verdicts work on log ratios


def epochs_to(run: Run, threshold: float) -> float:
    return stats.crossing_epoch(
        [0, *run.history["epoch"].tolist()], [CHANCE, *run.errors("train_acc").tolist()], threshold
    )


def tuned_runs(runs_dir: Path, condition: Fig1Condition, activation: str, lr: float) -> list[Run]:
    runs, _ = load_runs(runs_dir / lr_search.arm_folder("tuned", condition, activation, lr))
    return runs


def speedup(relu: list[Run], tanh: list[Run], threshold: float):
    """(paired log ratios, bound direction, censored counts) for one threshold."""
    budget = float(max((r.epochs for r in relu + tanh), default=0))
    raw = {
        a: {r.seed: epochs_to(r, threshold) for r in runs}
        for a, runs in (("relu", relu), ("tanh", tanh))
    }
    censored = {a: sum(math.isnan(v) for v in raw[a].values()) for a in raw}
    filled = {a: {s: (budget if math.isnan(v) else v) for s, v in raw[a].items()} for a in raw}
    logs = {a: {s: math.log(v) for s, v in filled[a].items() if v > 0} for a in raw}
    paired = stats.paired_difference(logs["relu"], logs["tanh"])
    # tanh censored only: its true epochs are more, so each ratio is a lower bound (+1);
    # ReLU censored only: an upper bound (-1); both in one study: no usable bound (0).
    common = set(raw["relu"]) & set(raw["tanh"])
    tanh_cut = any(math.isnan(raw["tanh"][s]) for s in common)
    relu_cut = any(math.isnan(raw["relu"][s]) for s in common)
    bound = (
        None
        if not (tanh_cut or relu_cut)
        else (0 if tanh_cut and relu_cut else (1 if tanh_cut else -1))
    )
    return paired, bound, censored, budget


def speedup_cell(relu: list[Run], tanh: list[Run], threshold: float) -> tuple[str, str, Paired]:
    """(the table's ratio text, the verdict, the paired log ratios) for one threshold. When no
    seed of either arm reached the level there is nothing to compare (every ratio would be
    the run length over itself, 1.00x), so the text says so and the pairs are empty."""
    paired, bound, cut, budget = speedup(relu, tanh, threshold)
    if relu and tanh and cut["relu"] == len(relu) and cut["tanh"] == len(tanh):
        text = (
            f"neither reached it in {budget:g} epochs "
            f"(ReLU 0 of {len(relu)}, tanh 0 of {len(tanh)})"
        )
        return text, stats.INCONCLUSIVE, stats.paired_difference({}, {})
    verdict = stats.bounded_verdict(paired, PAPER_LOG_RATIO, bound)
    note = (
        f" (censored at {budget:g} epochs: ReLU {cut['relu']}, tanh {cut['tanh']})"
        if bound is not None
        else ""
    )
    return f"{ratio_interval(paired)}{note}", verdict, paired


def report_relu_vs_tanh(study_dir: Path, scale: Scale) -> list[dict[str, Any]] | None:
    runs_dir = study_dir / scale.runs
    tuned = lr_search.tuned_lrs(runs_dir)
    if not tuned:
        return None
    conditions = [c for c in FIG1_CONDITIONS if any((c.name, a) in tuned for a in ACTIVATIONS)]
    arms = {
        (c.name, a): tuned_runs(runs_dir, c, a, tuned[(c.name, a)][0])
        for c in conditions
        for a in ACTIVATIONS
        if (c.name, a) in tuned
    }
    arm_rows, effect_rows, claim_rows = [], [], []
    # One row per input scale, one column per init (FIG1_CONDITIONS' order).
    fig, axes, row_starts = figures.panels(len(conditions), sharey=True)
    pfig, paxes, prow_starts = figures.panels(len(conditions), width=2.6, sharey=True)
    for column, c in enumerate(conditions):
        ax = axes[column]
        for activation, style in (("relu", "-"), ("tanh", "--")):
            runs = arms.get((c.name, activation), [])
            lr, bracketed = tuned.get((c.name, activation), (math.nan, False))
            budget = float(max((r.epochs for r in runs), default=0))
            arm_rows.append(
                [
                    c.name,
                    activation,
                    f"{lr:g}" + ("" if bracketed else " (edge of grid)"),
                    len(runs),
                    *[
                        stats.censored([epochs_to(r, t) for r in runs], budget).describe()
                        for t in FIG1_THRESHOLDS
                    ],
                    stats.spread([r.errors("train_acc")[-1] * 100 for r in runs]),
                    stats.spread([_final_val_err(r) * 100 for r in runs]),
                ]
            )
            figures.curve(
                ax,
                runs,
                "train_acc",
                f"{activation}, lr {lr:g}",
                linestyle=style,
                color="C0" if activation == "relu" else "C1",
            )
        for t in (0.25, FIG1_PRIMARY):
            ax.axhline(t * 100, color="grey", linewidth=0.6, linestyle=":")
            label = f"{t:.0%} (paper's level)" if t == 0.25 else f"{t:.0%}"
            ax.text(ax.get_xlim()[1], t * 100, label, fontsize=7, va="bottom", ha="right")
        ax.set_title(f"init {c.init}, {c.scale}-scale inputs", fontsize=8)
        ax.set_xlabel("epochs")
        ax.legend(fontsize=7)

        relu, tanh = arms.get((c.name, "relu"), []), arms.get((c.name, "tanh"), [])
        per_threshold = []
        for t in FIG1_THRESHOLDS:
            text, verdict, paired = speedup_cell(relu, tanh, t)
            per_threshold.append(f"{text} — {verdict}")
            if t == FIG1_PRIMARY:
                primary, primary_verdict, primary_text = paired, verdict, text
        mde = stats.detectable_effect(primary.sd, primary.n)
        effect_rows.append([c.name, *per_threshold, _ratio(mde)])
        claim_rows.append(
            {
                "comparison": f"init {c.init}, {c.scale}-scale inputs",
                "ours": f"tanh/ReLU epochs to {FIG1_PRIMARY:.0%}: {primary_text}",
                "mde": _ratio(mde),
                "verdict": primary_verdict,
            }
        )
        figures.paired_panel(paxes[column], primary, PAPER_LOG_RATIO, c.name, log=True)
        if primary.n == 0 and relu and tanh:
            figures.empty(paxes[column], f"no seed reached {FIG1_PRIMARY:.0%}\nin either arm")
    for ax in row_starts:
        ax.set_ylabel("training error (%)")
    figures.title(
        fig, "ReLU (solid) vs tanh (dashed) at each one's tuned lr: training error, mean ± 1 SD"
    )
    figures.save(fig, study_dir / f"fig1_train_error{scale.suffix}.png")
    for ax in prow_starts:
        ax.set_ylabel(f"tanh / ReLU epochs to {FIG1_PRIMARY:.0%} train err")
    figures.save(pfig, study_dir / f"speedup{scale.suffix}.png")
    grid_rows = _lr_grid(study_dir, runs_dir, conditions, tuned, scale)

    all_runs, failed = load_runs(runs_dir)
    wall = sum(r.summary.get("wall_s", 0.0) for r in all_runs)
    thresholds = [f"to {t:.0%}" for t in FIG1_THRESHOLDS]
    text = "\n".join(
        [
            f"# ReLU vs tanh (claim 1, Figure 1): results ({scale.dataset})",
            "",
            GENERATED,
            "",
            "Epochs are passes over the training subset; training error is Lightning's running "
            "mean over each epoch, as cuda-convnet plotted it, and 'epochs to x' is "
            "interpolated linearly between epoch ends (epoch 0: chance, 90%). Values are mean "
            "± SD over seeds; a seed that never reached a level is censored, never dropped.",
            "",
            "## Each arm at its tuned learning rate",
            "",
            markdown_table(
                [
                    "condition",
                    "activation",
                    "lr",
                    "seeds",
                    *[f"epochs {t}" for t in thresholds],
                    "final train err (%)",
                    "final val err (%)",
                ],
                arm_rows,
            ),
            "",
            f"## tanh / ReLU epochs (paper: about {FIG1_PAPER_RATIO:g}× to 25%)",
            "",
            "Geometric mean of the per-seed ratios with its 95% CI (a t-interval on the log "
            f"ratios), then the rule's verdict. The verdict of the claims table is the "
            f"{FIG1_PRIMARY:.0%} column.",
            "",
            markdown_table(
                ["condition", *thresholds, f"detectable at 80% power ({FIG1_PRIMARY:.0%})"],
                effect_rows,
            ),
            "",
            f"![training error vs epochs](fig1_train_error{scale.suffix}.png)",
            "",
            f"![tanh/ReLU ratio per seed](speedup{scale.suffix}.png)",
            "",
            "## Learning-rate search (seed 0, short runs)",
            "",
            "Each arm's lr is the one with the lowest mean training error over the short run; "
            "the grid is extended until the best lr has a worse one on each side.",
            "",
            markdown_table(["condition", "activation", "lr: mean train err (%)"], grid_rows),
            "",
            f"![lr search](lr_grid{scale.suffix}.png)",
            "",
            f"Compute: {len(all_runs)} runs, {minutes(wall)} of job wall time"
            + (f"; {len(failed)} failed jobs not counted" if failed else "")
            + ".",
            "",
        ]
    )
    write_if_changed(study_dir / f"results{scale.suffix}.md", text)
    readme = study_dir / "README.md"
    if readme.is_file():
        replace_between(readme, f"results{scale.suffix}", "\n".join(text.splitlines()[4:]))
    for row in claim_rows:
        row["compute"] = minutes(wall)
    return claim_rows


def _final_val_err(run: Run) -> float:
    val = run.history["val_acc"].dropna()
    return 1.0 - float(val.iloc[-1]) if len(val) else math.nan


def _ratio(log_value: float) -> str:
    return "—" if math.isnan(log_value) else f"×{math.exp(log_value):.2f}"


def _lr_grid(study_dir, runs_dir, conditions, tuned, scale: Scale) -> list[list[str]]:
    rows = []
    fig, axes, row_starts = figures.panels(len(conditions))
    for column, c in enumerate(conditions):
        ax = axes[column]
        for activation, marker in (("relu", "o"), ("tanh", "s")):
            grid = lr_search.grid_points(runs_dir, c, activation)
            best = tuned.get((c.name, activation), (math.nan,))[0]
            rows.append(
                [
                    c.name,
                    activation,
                    ", ".join(
                        f"{p.lr:g}: {points(p.mean_train_err)}"
                        + (" (tuned)" if p.lr == best else "")
                        for p in grid
                    ),
                ]
            )
            errs = np.array(figures.finite_or_nan([p.mean_train_err for p in grid])) * 100
            ax.plot([p.lr for p in grid], errs, marker=marker, label=activation)
        ax.set_xscale("log")
        ax.set_title(f"init {c.init}, {c.scale}-scale inputs", fontsize=8)
        ax.set_xlabel("learning rate")
        ax.legend(fontsize=7)
    for ax in row_starts:
        ax.set_ylabel("mean training error over the run (%)")
    figures.save(fig, study_dir / f"lr_grid{scale.suffix}.png")
    return rows
