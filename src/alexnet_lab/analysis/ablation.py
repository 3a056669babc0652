"""Claims 2-6: one switch off against the reference, paired by seed.

The measure is top-1 error on the validation split (Fashion-MNIST's 10,000 test images)
at the epoch where the held-out training slice scored best: the choice never looks at the
numbers it reports. Each comparison goes through the rule (stats.judge) with whether each
arm is still improving and how many of its seeds collapsed to chance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_lab.analysis import continued, figures, stats
from alexnet_lab.analysis.runs import Run, first, load_runs
from alexnet_lab.analysis.specs import (
    RUN_ON_RUNS,
    RUN_ON_SCHEDULE,
    Arm,
    Comparison,
    Scale,
    Study,
)
from alexnet_lab.analysis.stats import LATE
from alexnet_lab.analysis.tables import (
    GENERATED,
    interval,
    markdown_table,
    minutes,
    p_value,
    points,
    size_text,
    write_results,
)

CONVERGED = 0.15  # "converged": training error (with the arm's own regularisers) at or below


@dataclass
class Measured:
    """What the tables read off one run."""

    selected_epoch: float
    val_err: float  # at the selected epoch
    final_val_err: float
    final_train_err: float
    val_loss_rise: float
    late_change: float  # val error, last validation - the last one LATE or more epochs before
    epochs_to_converge: float


def measure(run: Run) -> Measured:
    h = run.history
    holdout = h["holdout_acc"].to_numpy(dtype=float)
    val = h["val_acc"].to_numpy(dtype=float)
    validated = np.flatnonzero(~np.isnan(val))
    if len(validated) == 0:
        nan = math.nan
        return Measured(nan, nan, nan, nan, nan, nan, nan)
    scored = validated[~np.isnan(holdout[validated])]
    # The held-out slice's best epoch (the earliest of ties); without one, the last epoch.
    pick = scored[np.argmax(holdout[scored])] if len(scored) else validated[-1]
    train_err = run.errors("train_acc")
    val_loss = h["val_loss"].to_numpy(dtype=float)
    epochs = h["epoch"].to_numpy(dtype=float)
    earlier = validated[epochs[validated] <= epochs[validated[-1]] - LATE]
    late_change = val[earlier[-1]] - val[validated[-1]] if len(earlier) else math.nan
    return Measured(
        selected_epoch=float(h["epoch"].iloc[pick]),
        val_err=1.0 - val[pick],
        final_val_err=1.0 - val[validated[-1]],
        final_train_err=float(train_err[-1]),
        val_loss_rise=float(val_loss[validated[-1]] - np.nanmin(val_loss)),
        late_change=float(late_change),  # accuracy before - after = error after - before
        # Training error is each epoch's running mean: placed at the epoch's middle.
        epochs_to_converge=stats.crossing_epoch(
            [0, *(epochs - 0.5).tolist()], [1.0, *train_err.tolist()], CONVERGED
        ),
    )


def load_arm(
    experiments: Path, scale: Scale, arm: Arm, runs: str | None = None
) -> tuple[list[Run], list[Path]]:
    return load_runs(experiments / arm.study / (runs or scale.runs) / arm.folder)


def collapsed(runs: list[Run]) -> int:
    """Seeds whose training error ended at chance (stats.COLLAPSED_ERROR or more)."""
    return sum(measure(r).final_train_err >= stats.COLLAPSED_ERROR for r in runs)


def late_change(runs: list[Run]) -> float:
    """The arm's mean val-error change over its last LATE epochs (NaN without one)."""
    changes = [v for v in (measure(r).late_change for r in runs) if not math.isnan(v)]
    return float(np.mean(changes)) if changes else math.nan


def by_seed(runs: list[Run], field: str) -> dict[int, float]:
    return {r.seed: getattr(measure(r), field) for r in runs}


def arm_row(label: str, runs: list[Run]) -> list[Any]:
    if not runs:
        return [label, 0, *["—"] * (len(ARM_HEADER) - 2)]
    m = [measure(r) for r in runs]
    # Training error sits at each epoch's middle: a censored seed needed more than this.
    budget = float(max((r.epochs for r in runs), default=0)) - 0.5
    gaps = [x.final_val_err - x.final_train_err for x in m]
    return [
        label,
        len(runs),
        f"{first([r.summary.get('params') for r in runs]):,}",
        f"{first([r.summary.get('data/train_images') for r in runs])}",
        stats.spread([x.val_err * 100 for x in m]),
        stats.spread([x.selected_epoch for x in m], "{:.0f}"),
        stats.spread([x.final_val_err * 100 for x in m]),
        stats.spread([x.final_train_err * 100 for x in m]),
        stats.spread([g * 100 for g in gaps]),
        stats.spread([x.val_loss_rise for x in m], "{:.3f}"),
        stats.spread([x.late_change * 100 for x in m], "{:+.2f}"),
        stats.censored([x.epochs_to_converge for x in m], budget).describe(),
        f"{collapsed(runs)} of {len(runs)}",
    ]


ARM_HEADER = [
    "arm",
    "seeds",
    "params",
    "train images",
    "val top-1 err (%) at held-out best epoch",
    "that epoch",
    "final val err (%)",
    "final train err (%)",
    "val − train gap (points)",
    "val loss rise from its min",
    f"val err change over the last {LATE} epochs (points)",
    f"epochs to {CONVERGED:.0%} train err",
    f"collapsed (train err ended ≥ {stats.COLLAPSED_ERROR:.0%})",
]


@dataclass
class Compared:
    """One comparison's runs and the rule's reading of them."""

    judged: stats.Judgement
    reference: list[Run]
    variant: list[Run]
    run_on: bool  # the arms are the run-on runs (RUN_ON_RUNS), not the protocol's
    protocol: tuple[list[Run], list[Run]]  # the protocol's own runs of both arms
    # Run-on runs of both arms while fewer seeds than the protocol's are in: shown beside
    # the comparison, not standing for it.
    partial: tuple[list[Run], list[Run]] = ([], [])

    @property
    def paired(self) -> stats.Paired:
        return self.judged.paired


def judge(comparison: Comparison, reference: list[Run], variant: list[Run]) -> stats.Judgement:
    paired = stats.paired_difference(by_seed(reference, "val_err"), by_seed(variant, "val_err"))
    return stats.judge(
        paired,
        comparison.paper_effect / 100,
        still_improving=any(stats.still_improving(late_change(r)) for r in (reference, variant)),
        collapsed=collapsed(reference) + collapsed(variant),
    )


def compare(experiments: Path, scale: Scale, comparison: Comparison) -> Compared:
    """The comparison on the protocol's runs, or on the run-on runs where the comparison
    has them (CPU protocol) for at least every seed the protocol ran, in both arms."""
    protocol = tuple(
        load_arm(experiments, scale, arm)[0] for arm in (comparison.reference, comparison.variant)
    )
    arms, run_on, partial = protocol, False, ([], [])
    if comparison.run_on and scale.name == "cpu":
        longer = tuple(
            load_arm(experiments, scale, arm, RUN_ON_RUNS)[0]
            for arm in (comparison.reference, comparison.variant)
        )
        if all(runs and len(runs) >= len(p) for runs, p in zip(longer, protocol, strict=True)):
            arms, run_on = longer, True
        else:
            partial = longer
    return Compared(judge(comparison, *arms), arms[0], arms[1], run_on, protocol, partial)


def run_on_note(compared: Compared) -> str:
    """The claims table's word on arms run on past the protocol's end."""
    if compared.run_on:
        return f"both arms run on to {max(r.epochs for r in compared.variant)} epochs"
    if any(compared.partial):
        done = len({r.seed for r in compared.partial[0]} & {r.seed for r in compared.partial[1]})
        return f"run on: {done} of {compared.paired.n} seeds so far, not yet standing for the arms"
    return ""


def assumed(c: Comparison) -> str:
    """The claims table's word on an effect the paper gives no number for."""
    if c.paper_effect_source.startswith("not quantified"):
        return f"the paper gives no number: {c.paper_effect:g} point assumed"
    return ""


def ours_text(c: Comparison, compared: Compared) -> str:
    """The claims table's 'ours' cell: the interval, and beside it what the rule also
    read (collapsed seeds with the sign count and median; arms still improving)."""
    paired, judged = compared.paired, compared.judged
    text = interval(paired) + (" points" if paired.n >= 2 else "")
    if judged.collapsed:
        positive = sum(d > 0 for d in paired.differences)
        text += (
            f"; collapsed: {c.reference.label} {collapsed(compared.reference)}, "
            f"{c.variant.label} {collapsed(compared.variant)} of {paired.n}; "
            f"sign test {positive} of {paired.n} positive, "
            f"median {points(judged.median, signed=True)} points"
        )
    improving = [
        f"{arm.label} ({late_change(runs) * 100:+.2f} points over its last {LATE} epochs)"
        for arm, runs in ((c.reference, compared.reference), (c.variant, compared.variant))
        if stats.still_improving(late_change(runs))
    ]
    if improving:
        text += "; still improving: " + ", ".join(improving)
    return text


def report_study(study: Study, experiments: Path, scale: Scale) -> list[dict[str, Any]] | None:
    """Rewrite the study's results and figures; its claims-table rows, or None (and nothing
    written) when none of its variant arms has runs."""
    comparisons = study.comparisons
    loaded = [compare(experiments, scale, c) for c in comparisons]
    if scale.frozen:  # a kept first pass: only the comparisons it ran
        kept = [i for i, compared in enumerate(loaded) if compared.variant]
        comparisons, loaded = tuple(comparisons[i] for i in kept), [loaded[i] for i in kept]
    if not any(compared.variant for compared in loaded):
        return None
    study_dir = experiments / study.name
    failed = sum(
        len(load_arm(experiments, scale, arm)[1])
        for c in comparisons
        for arm in (c.reference, c.variant)
    )
    fig, axes = figures.figure(len(comparisons), 2, height=3.2, squeeze=False)
    sections, rows, run_on_rows = [], [], []
    counted: dict[str, Run] = {}  # every run once, however many comparisons share it
    for column, (c, compared) in enumerate(zip(comparisons, loaded, strict=True)):
        paired, judged = compared.paired, compared.judged
        reference, variant = compared.reference, compared.variant
        # The t-test's resolution means nothing where the rule reads the sign test.
        mde = math.nan if judged.test == "sign" else stats.detectable_effect(paired.sd, paired.n)
        for r in (
            reference + variant + [r for arm in compared.protocol + compared.partial for r in arm]
        ):
            counted[str(r.path)] = r
        sections += [
            f"### {c.label}",
            "",
            *([f"What it measures: {c.note}.", ""] if c.note else []),
            markdown_table(
                ARM_HEADER,
                [arm_row(c.reference.label, reference), arm_row(c.variant.label, variant)],
            ),
            "",
            markdown_table(
                [
                    "Δ val top-1 err (points), 95% CI",
                    "detectable at 80% power",
                    "paper",
                    "size vs the paper",
                    f"p ({judged.test or '—'}-test)",
                    "verdict",
                ],
                [
                    [
                        ours_text(c, compared),
                        points(mde),
                        f"{c.paper_effect:+.1f} ({c.paper_effect_source})",
                        size_text(judged),
                        p_value(judged.p),
                        judged.verdict,
                    ]
                ],
            ),
            "",
        ]
        if compared.run_on:
            first = judge(c, *compared.protocol)
            sections += [
                f"The arms above were run on ([Arms run on](#arms-run-on)). At the protocol's "
                f"own end, on its runs: {interval(first.paired)} points, {first.verdict}.",
                "",
            ]
        elif any(compared.partial):
            so_far = replace(
                compared,
                judged=judge(c, *compared.partial),
                reference=compared.partial[0],
                variant=compared.partial[1],
            )
            seeds = ", ".join(map(str, so_far.paired.seeds)) or "none paired"
            moving = ", ".join(
                f"{arm.label} {late_change(runs) * 100:+.2f}"
                for arm, runs in zip((c.reference, c.variant), compared.partial, strict=True)
                if runs
            )
            sections += [
                f"Run on so far ([Arms run on](#arms-run-on)), seeds {seeds}: "
                f"{ours_text(c, so_far)}, {so_far.judged.verdict} on those seeds (val err "
                f"change over their last {LATE} epochs, points: {moving}); the verdict above "
                "stays the protocol runs' until every seed has run on.",
                "",
            ]
        longer = (reference, variant) if compared.run_on else compared.partial
        for arm, runs, protocol in zip(
            (c.reference, c.variant), longer, compared.protocol, strict=True
        ):
            if runs:
                run_on_rows.append(continued.run_on_row(f"{c.label}: {arm.label}", protocol, runs))
        rows.append(
            {
                "comparison": c.label,
                # A unit only beside a number with its interval ("no paired seeds" has none).
                "ours": ours_text(c, compared),
                "size": size_text(judged),
                "judgement": judged,
                "mde": points(mde) + ("" if math.isnan(mde) else " points"),
                "verdict": judged.verdict,
                "note": "; ".join(n for n in (c.note, assumed(c), run_on_note(compared)) if n),
            }
        )
        ax = axes[0][column]
        for i, (label, runs) in enumerate(
            ((c.reference.label, reference), (c.variant.label, variant))
        ):
            figures.curve(ax, runs, "train_acc", f"{label}, train", color=f"C{i}", linestyle="--")
            figures.curve(ax, runs, "val_acc", f"{label}, val", color=f"C{i}")
        ax.set_title(c.label, fontsize=8)
        if reference or variant:
            ax.set_xlabel("epochs")
            ax.set_ylabel("top-1 error (%)")
            ax.legend(fontsize=8)
        else:
            figures.empty(ax, stats.PENDING)
        figures.paired_panel(
            axes[1][column],
            paired,
            c.paper_effect / 100,
            f"{c.variant.label} − {c.reference.label}",
        )
        axes[1][column].set_ylabel("Δ val top-1 err (points)")
    figures.title(
        fig,
        f"{study.claim}: train (dashed; each epoch's running mean, at its middle) and val "
        "(solid) error, mean ± 1 SD over seeds; below: each seed's paired difference, their "
        "mean and 95% CI",
    )
    figures.save(fig, study_dir / f"curves{scale.suffix}.png")
    wall = sum(r.summary.get("wall_s", 0.0) for r in counted.values())
    text = "\n".join(
        [
            f"# {study.claim}: results ({scale.dataset})",
            "",
            GENERATED,
            "",
            f"Paper: {study.paper}. Others: {study.others}.",
            "",
            "Error in %; an arm's value is mean ± SD over seeds. Training error is measured "
            "during training, with that arm's dropout and augmentation active. The verdict "
            "follows the rule in [../README.md](../README.md#how-a-verdict-is-reached).",
            "",
            *sections,
            *continued.run_on_section(run_on_rows, RUN_ON_RUNS, RUN_ON_SCHEDULE),
            f"![curves and paired differences](curves{scale.suffix}.png)",
            "",
            f"Compute: {len(counted)} runs, {minutes(wall)} of job wall time"
            + (f"; {failed} failed jobs not counted" if failed else "")
            + ".",
            "",
        ]
    )
    return write_results(study_dir, scale.suffix, text, rows, wall)
