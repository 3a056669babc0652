"""Claim 1 (Figure 1): how much faster ReLU trains than tanh, each at its own tuned lr.

Per condition (init x input scale) and seed, the measure is log(tanh epochs / ReLU epochs)
to a training-error level; its paired mean and 95% interval, shown as a ratio, go
through the verdict rule with the paper's 6x. A seed that never reached the level within
the run is censored: it enters at its run length, so its ratio is a bound, the comparison
is printed as a one-sided bound and the verdict is kept only where that bound supports it
(stats.judge). An arm whose every seed was censored is run on (relu_vs_tanh/run.sh
continued, into runs-continued/): where those runs are in, they stand for the arm.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_lab.analysis import continued, figures, lr_search, stats
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
from alexnet_lab.analysis.tables import (
    GENERATED,
    markdown_table,
    minutes,
    points,
    ratio_bound,
    ratio_interval,
    size_text,
    write_results,
)

CHANCE = 0.9  # ten classes: the training error at epoch 0
PAPER_LOG_RATIO = math.log(FIG1_PAPER_RATIO)  # the verdicts work on log ratios
PAPER_LEVEL = 0.25  # the level the paper's 6x was read at
CONTINUED_RUNS = "runs-continued"  # arms run on past the protocol's 12 epochs


def train_error_points(run: Run) -> tuple[list[float], list[float]]:
    """Training error against epochs. Each epoch's value is the running mean over that
    epoch, so it sits at the epoch's middle; epoch 0 is chance."""
    middles = (run.history["epoch"].to_numpy(dtype=float) - 0.5).tolist()
    return [0.0, *middles], [CHANCE, *run.errors("train_acc").tolist()]


def epochs_to(run: Run, threshold: float) -> float:
    return stats.crossing_epoch(*train_error_points(run), threshold)


def observed(run: Run) -> float:
    """How far a run saw its training error: a seed censored there needs more epochs."""
    return run.epochs - 0.5


def tuned_runs(
    study_dir: Path, scale: Scale, condition: Fig1Condition, activation: str, lr: float
) -> tuple[list[Run], list[Run]]:
    """(the runs that stand for the arm, the protocol's own runs). Under the CPU protocol an
    arm run on (runs-continued/) stands for itself once it has as many seeds as the
    protocol's runs."""
    folder = lr_search.arm_folder("tuned", condition, activation, lr)
    protocol, _ = load_runs(study_dir / scale.runs / folder)
    if scale.name == "cpu":
        continued, _ = load_runs(study_dir / CONTINUED_RUNS / folder)
        if continued and len(continued) >= len(protocol):
            return continued, protocol
    return protocol, protocol


def speedup(relu: list[Run], tanh: list[Run], threshold: float):
    """(paired log ratios, bound direction, censored counts, bounded seeds) at one level."""
    raw = {
        a: {r.seed: (epochs_to(r, threshold), observed(r)) for r in runs}
        for a, runs in (("relu", relu), ("tanh", tanh))
    }
    censored = {a: sum(math.isnan(v) for v, _ in raw[a].values()) for a in raw}
    # A censored seed enters at the epochs its run observed: more were needed.
    filled = {
        a: {s: (seen if math.isnan(v) else v) for s, (v, seen) in raw[a].items()} for a in raw
    }
    logs = {a: {s: math.log(v) for s, v in filled[a].items() if v > 0} for a in raw}
    paired = stats.paired_difference(logs["relu"], logs["tanh"])
    # tanh censored only: its true epochs are more, so each ratio is a lower bound (+1);
    # ReLU censored only: an upper bound (-1); both in one study: no usable bound (0).
    tanh_cut = {s for s in paired.seeds if math.isnan(raw["tanh"][s][0])}
    relu_cut = {s for s in paired.seeds if math.isnan(raw["relu"][s][0])}
    bound = (
        None
        if not (tanh_cut or relu_cut)
        else (0 if tanh_cut and relu_cut else (1 if tanh_cut else -1))
    )
    return paired, bound, censored, tanh_cut | relu_cut


def _lengths(runs: list[Run]) -> str:
    return "/".join(f"{e:g}" for e in sorted({r.epochs for r in runs})) or "0"


def speedup_cell(
    relu: list[Run], tanh: list[Run], threshold: float
) -> tuple[str, stats.Judgement, set[int], int | None]:
    """(the table's ratio text, the rule's judgement, the seeds whose ratio is a bound, the
    bound's direction) at one level. When no seed of either arm reached the level there is
    nothing to compare (every ratio would be a run length over another), so the text says
    so and the pairs are empty."""
    paired, bound, cut, bounded = speedup(relu, tanh, threshold)
    if relu and tanh and cut["relu"] == len(relu) and cut["tanh"] == len(tanh):
        text = (
            f"neither reached it (ReLU 0 of {len(relu)} in {_lengths(relu)} epochs, "
            f"tanh 0 of {len(tanh)} in {_lengths(tanh)})"
        )
        nothing = stats.judge(stats.paired_difference({}, {}), PAPER_LOG_RATIO)
        return text, replace(nothing, verdict=stats.INCONCLUSIVE), set(), None
    judged = stats.judge(paired, PAPER_LOG_RATIO, bound=bound)
    if bound is None:
        return ratio_interval(paired), judged, bounded, bound
    note = (
        f" (censored: ReLU {cut['relu']} of {len(relu)} in {_lengths(relu)} epochs, "
        f"tanh {cut['tanh']} of {len(tanh)} in {_lengths(tanh)})"
    )
    if bound == 0:
        return f"bounds on both sides, no ratio{note}", judged, bounded, bound
    return ratio_bound(paired, bound) + note, judged, bounded, bound


def report_relu_vs_tanh(study_dir: Path, scale: Scale) -> list[dict[str, Any]] | None:
    runs_dir = study_dir / scale.runs
    tuned = lr_search.tuned_lrs(runs_dir)
    if not tuned:
        return None
    conditions = [c for c in FIG1_CONDITIONS if any((c.name, a) in tuned for a in ACTIVATIONS)]
    arms = {
        (c.name, a): tuned_runs(study_dir, scale, c, a, tuned[(c.name, a)][0])
        for c in conditions
        for a in ACTIVATIONS
        if (c.name, a) in tuned
    }
    arm_rows, effect_rows, claim_rows, run_on = [], [], [], []
    # One row per input scale, one column per init (FIG1_CONDITIONS' order).
    fig, axes, row_starts = figures.panels(len(conditions), sharey=True)
    pfig, paxes, prow_starts = figures.panels(len(conditions), width=3.4, sharey=True)
    for column, c in enumerate(conditions):
        ax = axes[column]
        for activation, style in (("relu", "-"), ("tanh", "--")):
            runs, protocol = arms.get((c.name, activation), ([], []))
            lr, bracketed = tuned.get((c.name, activation), (math.nan, False))
            seen = float(max((observed(r) for r in runs), default=0))
            arm_rows.append(
                [
                    c.name,
                    activation,
                    f"{lr:g}" + ("" if bracketed else " (edge of grid)"),
                    len(runs),
                    _lengths(runs),
                    *[
                        stats.censored([epochs_to(r, t) for r in runs], seen).describe()
                        for t in FIG1_THRESHOLDS
                    ],
                    stats.spread([r.errors("train_acc")[-1] * 100 for r in runs]),
                    stats.spread([_final_val_err(r) * 100 for r in runs]),
                ]
            )
            if runs is not protocol:
                run_on.append(continued.run_on_row(f"{c.name}, {activation}", protocol, runs))
            figures.curve(
                ax,
                runs,
                "train_acc",
                f"{activation}, lr {lr:g}",
                linestyle=style,
                color="C0" if activation == "relu" else "C1",
            )
        for t in (PAPER_LEVEL, FIG1_PRIMARY):
            ax.axhline(t * 100, color="grey", linewidth=0.6, linestyle=":")
            label = f"{t:.0%} (paper's level)" if t == PAPER_LEVEL else f"{t:.0%}"
            ax.text(ax.get_xlim()[1], t * 100, label, fontsize=8, va="bottom", ha="right")
        ax.set_title(f"init {c.init}, {c.scale}-scale inputs", fontsize=8)
        ax.set_xlabel("epochs")
        ax.legend(fontsize=8)

        relu = arms.get((c.name, "relu"), ([], []))[0]
        tanh = arms.get((c.name, "tanh"), ([], []))[0]
        per_threshold, levels = [], []
        for t in FIG1_THRESHOLDS:
            text, judged, bounded, bound = speedup_cell(relu, tanh, t)
            per_threshold.append(f"{text} — {judged.verdict}")
            if t in (PAPER_LEVEL, FIG1_PRIMARY):
                levels.append((f"{t:.0%}", judged, bounded, bound))
            if t == FIG1_PRIMARY:
                primary, primary_text = judged, text
        # A bound has no upper limit, so no resolution either.
        mde = (
            math.nan
            if primary.bound is not None
            else stats.detectable_effect(primary.paired.sd, primary.paired.n)
        )
        effect_rows.append([c.name, *per_threshold, _ratio(mde)])
        claim_rows.append(
            {
                "comparison": f"init {c.init}, {c.scale}-scale inputs",
                "ours": f"tanh/ReLU epochs to {FIG1_PRIMARY:.0%}: {primary_text}",
                "size": size_text(primary),
                "judgement": primary,
                "mde": _ratio(mde),
                "verdict": primary.verdict,
                "note": _note(relu, tanh, arms.get((c.name, "tanh"), ([], []))),
            }
        )
        figures.speedup_panel(paxes[column], levels, FIG1_PAPER_RATIO, f"{PAPER_LEVEL:.0%}", c.name)
        if primary.paired.n == 0 and relu and tanh:
            paxes[column].text(
                1, 1, f"no seed of either\narm reached {FIG1_PRIMARY:.0%}", ha="center", fontsize=8
            )
    for ax in row_starts:
        ax.set_ylabel("training error (%)")
    figures.title(
        fig,
        "ReLU (solid) vs tanh (dashed) at each one's tuned lr: training error (each epoch's "
        "running mean, at the epoch's middle), mean ± 1 SD over seeds",
    )
    figures.save(fig, study_dir / f"fig1_train_error{scale.suffix}.png")
    for ax in prow_starts:
        ax.set_ylabel("tanh epochs / ReLU epochs to the level")
    figures.speedup_key(pfig)
    figures.title(
        pfig,
        f"tanh / ReLU epochs to {PAPER_LEVEL:.0%} (the paper's level: {FIG1_PAPER_RATIO:g}×) "
        f"and to {FIG1_PRIMARY:.0%} (the verdict's), per seed, with the geometric mean and "
        "its 95% CI; a censored seed gives only a bound",
    )
    figures.save(pfig, study_dir / f"speedup{scale.suffix}.png")
    grid_rows = _lr_grid(study_dir, runs_dir, conditions, tuned, scale)

    all_runs, failed = load_runs(runs_dir)
    extra = [r for runs, protocol in arms.values() if runs is not protocol for r in runs]
    wall = sum(r.summary.get("wall_s", 0.0) for r in all_runs + extra)
    thresholds = [f"to {t:.0%}" for t in FIG1_THRESHOLDS]
    text = "\n".join(
        [
            f"# ReLU vs tanh (claim 1, Figure 1): results ({scale.dataset})",
            "",
            GENERATED,
            "",
            "Epochs are passes over the training subset; training error is Lightning's running "
            "mean over each epoch, as cuda-convnet plotted it, so each epoch's value is placed "
            "at the epoch's middle (epoch 0: chance, 90%) and 'epochs to x' is interpolated "
            "linearly between those points. Values are mean ± SD over seeds; a seed that "
            "never reached a level is censored, never dropped: it needs more than the epochs "
            "its run observed (its length − 0.5).",
            "",
            "## Each arm at its tuned learning rate",
            "",
            markdown_table(
                [
                    "condition",
                    "activation",
                    "lr",
                    "seeds",
                    "epochs run",
                    *[f"epochs {t}" for t in thresholds],
                    "final train err (%)",
                    "final val err (%)",
                ],
                arm_rows,
            ),
            "",
            *continued.run_on_section(run_on, CONTINUED_RUNS, "constant lr, as in the protocol"),
            f"## tanh / ReLU epochs (paper: about {FIG1_PAPER_RATIO:g}× to 25%)",
            "",
            "Geometric mean of the per-seed ratios with its 95% CI (a t-interval on the log "
            "ratios), then the rule's verdict. Where a ratio rests on a censored seed it is a "
            "bound: '≥' with its 95% lower limit, no upper limit. The verdict of the claims "
            f"table is the {FIG1_PRIMARY:.0%} column.",
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
            f"Compute: {len(all_runs) + len(extra)} runs"
            + (f" ({len(extra)} of them run on)" if extra else "")
            + f", {minutes(wall)} of job wall time"
            + (f"; {len(failed)} failed jobs not counted" if failed else "")
            + ".",
            "",
        ]
    )
    return write_results(study_dir, scale.suffix, text, claim_rows, wall)


def _note(relu: list[Run], tanh: list[Run], tanh_arm: tuple[list[Run], list[Run]]) -> str:
    """What the claims table says beside a claim-1 row: a run-on arm, or an arm left
    censored."""
    runs, protocol = tanh_arm
    if runs is not protocol:
        return f"tanh run on to {_lengths(runs)} epochs (same lr, constant)"
    cut = {
        name: all(math.isnan(epochs_to(r, FIG1_PRIMARY)) for r in arm)
        for name, arm in (("ReLU", relu), ("tanh", tanh))
        if arm
    }
    if cut and all(cut.values()):
        return "both arms censored; not run on within this pass's CPU budget"
    return ""


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
            line = ax.plot([p.lr for p in grid], errs, marker=marker, label=activation)[0]
            chosen = [i for i, p in enumerate(grid) if p.lr == best]
            if chosen:  # the tuned lr: a ring around its point
                ax.scatter(
                    [best], errs[chosen], s=140, facecolors="none", edgecolors=line.get_color(),
                    linewidths=1.5, zorder=3,
                )  # fmt: skip
        ax.scatter([], [], s=140, facecolors="none", edgecolors="grey", label="tuned lr")
        ax.set_xscale("log")
        ax.set_title(f"init {c.init}, {c.scale}-scale inputs", fontsize=8)
        ax.set_xlabel("learning rate")
        ax.legend(fontsize=8)
    for ax in row_starts:
        ax.set_ylabel("mean training error over the run (%)")
    figures.title(
        fig,
        "lr search: each arm's mean training error over a short seed-0 run per lr; the "
        "ringed point is the lr its seeds ran at",
    )
    figures.save(fig, study_dir / f"lr_grid{scale.suffix}.png")
    return rows
