"""Claims 2-6: one switch off against the reference, paired by seed.

The measure is top-1 error on the validation split (Fashion-MNIST's 10,000 test images)
at the epoch where the held-out training slice scored best: the choice never looks at the
numbers it reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_lab.analysis import figures, stats
from alexnet_lab.analysis.runs import Run, first, load_runs
from alexnet_lab.analysis.specs import Arm, Comparison, Scale, Study
from alexnet_lab.analysis.tables import (
    GENERATED,
    interval,
    markdown_table,
    minutes,
    points,
    replace_between,
    write_if_changed,
)

CONVERGED = 0.15  # "converged": training error (with the arm's own regularisers) at or below
# Has an arm stopped improving? Its val error's change over the run's last LATE epochs.
LATE = 6


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
        epochs_to_converge=stats.crossing_epoch(
            [0, *h["epoch"].tolist()], [1.0, *train_err.tolist()], CONVERGED
        ),
    )


def load_arm(experiments: Path, scale: Scale, arm: Arm) -> tuple[list[Run], list[Path]]:
    return load_runs(experiments / arm.study / scale.runs / arm.folder)


def by_seed(runs: list[Run], field: str) -> dict[int, float]:
    return {r.seed: getattr(measure(r), field) for r in runs}


def arm_row(label: str, runs: list[Run]) -> list[Any]:
    if not runs:
        return [label, 0, *["—"] * (len(ARM_HEADER) - 2)]
    m = [measure(r) for r in runs]
    budget = float(max((r.epochs for r in runs), default=0))
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
]


def compare(
    experiments: Path, scale: Scale, comparison: Comparison
) -> tuple[stats.Paired, list[Run], list[Run]]:
    reference, _ = load_arm(experiments, scale, comparison.reference)
    variant, _ = load_arm(experiments, scale, comparison.variant)
    paired = stats.paired_difference(by_seed(reference, "val_err"), by_seed(variant, "val_err"))
    return paired, reference, variant


def report_study(study: Study, experiments: Path, scale: Scale) -> list[dict[str, Any]] | None:
    """Rewrite the study's results and figures; its claims-table rows, or None (and nothing
    written) when none of its variant arms has runs."""
    comparisons = study.comparisons
    loaded = [compare(experiments, scale, c) for c in comparisons]
    if scale.frozen:  # a kept first pass: only the comparisons it ran
        kept = [i for i, (_, _, variant) in enumerate(loaded) if variant]
        comparisons, loaded = tuple(comparisons[i] for i in kept), [loaded[i] for i in kept]
    if not any(variant for _, _, variant in loaded):
        return None
    study_dir = experiments / study.name
    failed = sum(
        len(load_arm(experiments, scale, arm)[1])
        for c in comparisons
        for arm in (c.reference, c.variant)
    )
    fig, axes = figures.figure(len(comparisons), 2, height=3.2, squeeze=False)
    sections, rows, seen = [], [], set()
    for column, (c, (paired, reference, variant)) in enumerate(
        zip(comparisons, loaded, strict=True)
    ):
        verdict = stats.verdict(paired, c.paper_effect / 100)
        mde = stats.detectable_effect(paired.sd, paired.n)
        seen.update(str(r.path) for r in reference + variant)
        sections += [
            f"### {c.label}",
            "",
            markdown_table(
                ARM_HEADER,
                [arm_row(c.reference.label, reference), arm_row(c.variant.label, variant)],
            ),
            "",
            markdown_table(
                ["Δ val top-1 err (points), 95% CI", "detectable at 80% power", "paper", "verdict"],
                [
                    [
                        interval(paired),
                        points(mde),
                        f"{c.paper_effect:+.1f} ({c.paper_effect_source})",
                        verdict,
                    ]
                ],
            ),
            "",
        ]
        rows.append(
            {
                "comparison": c.label,
                # A unit only beside a number with its interval ("no paired seeds" has none).
                "ours": interval(paired) + (" points" if paired.n >= 2 else ""),
                "mde": points(mde) + ("" if math.isnan(mde) else " points"),
                "verdict": verdict,
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
            ax.legend(fontsize=6)
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
        f"{study.claim}: train (dashed) and val (solid) error, mean ± 1 SD over seeds; "
        "below: each seed's paired difference, their mean and 95% CI",
    )
    figures.save(fig, study_dir / f"curves{scale.suffix}.png")
    wall = sum(
        r.summary.get("wall_s", 0.0)
        for _, reference, variant in loaded
        for r in reference + variant
    )
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
            f"![curves and paired differences](curves{scale.suffix}.png)",
            "",
            f"Compute: {len(seen)} runs, {minutes(wall)} of job wall time"
            + (f"; {failed} failed jobs not counted" if failed else "")
            + ".",
            "",
        ]
    )
    write_if_changed(study_dir / f"results{scale.suffix}.md", text)
    readme = study_dir / "README.md"
    if readme.is_file():
        replace_between(readme, f"results{scale.suffix}", "\n".join(text.splitlines()[4:]))
    for row in rows:
        row["compute"] = minutes(wall)
    return rows
