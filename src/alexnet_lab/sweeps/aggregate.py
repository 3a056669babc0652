"""A sweep's seeds aggregated: one row per arm (what its jobs ran, the seed left out), the
number of seeds, each final metric's mean with its 95% t-interval, and the difference to
the reference arm (`ablation=baseline`, else the first arm) paired by seed, with its
interval. The statistics are the study report's (alexnet_lab.analysis.stats).

alexnet_lab.sweeps.summary appends the table to summary.md and writes it as aggregate.csv (a second
table inside summary.csv would break its one-row-per-job readers); alexnet_lab.sweeps.report
logs the same rows to W&B.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from alexnet_lab.analysis import stats
from alexnet_lab.files import atomic_write
from alexnet_lab.jobs.naming import arm_name, arm_overrides

# The final metrics aggregated, in this order, when the jobs report them (metrics.json).
METRICS = ("val/acc_top1", "best/val/acc_top1", "val/acc_top5", "val/loss", "train/loss")
REFERENCE_OVERRIDE = "ablation=baseline"
CSV_NAME = "aggregate.csv"

log = logging.getLogger(__name__)


@dataclass
class Arm:
    name: str  # the W&B config `arm` of its runs
    overrides: list[str]  # tracking.arm_overrides: what ran, the seed left out
    jobs: list[tuple[int | None, dict[str, Any]]]  # (seed, summary row) per completed job

    @property
    def seeds(self) -> list[int | None]:
        return [seed for seed, _ in self.jobs]

    def by_seed(self, metric: str) -> dict[int, float] | None:
        """metric by seed; None when seeds repeat or are unknown (nothing to pair by)."""
        seeds = self.seeds
        if None in seeds or len(set(seeds)) != len(seeds):
            return None
        return {seed: float(row.get(metric, math.nan)) for seed, row in self.jobs}


@dataclass
class ArmSummary:
    arm: Arm
    label: str  # the overrides that tell it from the other arms
    is_reference: bool
    means: dict[str, stats.Interval]
    differences: dict[str, stats.Paired | None]  # None: the reference, or nothing to pair


@dataclass
class Aggregate:
    arms: list[ArmSummary]
    metrics: list[str]
    common: list[str]  # overrides every arm shares

    @property
    def reference(self) -> ArmSummary | None:
        return next((a for a in self.arms if a.is_reference), None)


def _job_overrides_and_seed(row: dict[str, Any]) -> tuple[list[str], int | None]:
    job_dir = Path(row["output_dir"])
    overrides = [str(o) for o in OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")]
    seeds = [o.split("=", 1)[1] for o in overrides if o.lstrip("+~").startswith("seed=")]
    if not seeds and (job_dir / ".hydra" / "config.yaml").is_file():
        seeds = [OmegaConf.load(job_dir / ".hydra" / "config.yaml").get("seed")]
    try:
        return overrides, int(seeds[0])
    except (IndexError, TypeError, ValueError):
        return overrides, None


def group_arms(rows: list[dict[str, Any]]) -> list[Arm]:
    """Completed jobs grouped by arm, arms in the order of their first job."""
    arms: dict[str, Arm] = {}
    for row in rows:
        if row.get("status") != "completed":
            continue
        overrides, seed = _job_overrides_and_seed(row)
        name = arm_name(overrides)
        arm = arms.setdefault(name, Arm(name, arm_overrides(overrides), []))
        arm.jobs.append((seed, row))
    return list(arms.values())


def aggregate(rows: list[dict[str, Any]]) -> Aggregate:
    arms = group_arms(rows)
    if not arms:
        return Aggregate([], [], [])
    metrics = [m for m in METRICS if any(m in row for arm in arms for _, row in arm.jobs)]
    common = [o for o in arms[0].overrides if all(o in a.overrides for a in arms)]
    reference = next((a for a in arms if REFERENCE_OVERRIDE in a.overrides), arms[0])
    summaries = []
    for arm in arms:
        means = {
            m: stats.mean_interval([float(row.get(m, math.nan)) for _, row in arm.jobs])
            for m in metrics
        }
        differences: dict[str, stats.Paired | None] = {}
        for m in metrics:
            ref, own = reference.by_seed(m), arm.by_seed(m)
            paired = None
            if arm is not reference and ref is not None and own is not None:
                paired = stats.paired_difference(ref, own)
            differences[m] = paired if paired is not None and paired.n > 0 else None
        label = " ".join(o for o in arm.overrides if o not in common) or arm.name
        summaries.append(ArmSummary(arm, label, arm is reference, means, differences))
    return Aggregate(summaries, metrics, common)


# ------------------------------------------------------------ output


def _number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4g}"


def table(agg: Aggregate) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows, one per arm: aggregate.csv and the W&B table `sweep/aggregate`."""
    columns = ["arm", "label", "reference", "n", "seeds"]
    for m in agg.metrics:
        columns += [m, f"{m} ci_low", f"{m} ci_high"]
        columns += [f"{m} diff", f"{m} diff_low", f"{m} diff_high", f"{m} pairs"]
    data = []
    for s in agg.arms:
        row: list[Any] = [s.arm.name, s.label, s.is_reference, len(s.arm.jobs), _seeds(s.arm)]
        for m in agg.metrics:
            mean, diff = s.means[m], s.differences[m]
            row += [mean.mean, mean.low, mean.high]
            row += [diff.mean, diff.low, diff.high, diff.n] if diff else [math.nan] * 3 + [0]
        data.append(row)
    return columns, data


def markdown(agg: Aggregate) -> list[str]:
    if not agg.arms:
        return ["## Seeds aggregated", "", "No completed job yet."]
    reference = agg.reference
    lines = [
        "## Seeds aggregated",
        "",
        "One row per arm: the jobs' overrides but `seed`"
        + (f" (every arm also ran `{' '.join(agg.common)}`)" if agg.common else "")
        + ". Completed jobs only. A value is the mean over seeds [its 95% t-interval]; "
        f"Δ is the arm minus the reference arm `{reference.label}`, the mean of the "
        "differences paired by seed [95% t-interval] (alexnet_lab.analysis.stats). "
        f"Also in {CSV_NAME}.",
        "",
    ]
    header = ["arm", "n", "seeds"]
    for m in agg.metrics:
        header += [m, f"Δ {m}"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in agg.arms:
        cells = [s.label + (" (reference)" if s.is_reference else ""), str(len(s.arm.jobs))]
        cells.append(_seeds(s.arm))
        for m in agg.metrics:
            cells += [_interval(s.means[m]), _difference(s, m)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def _seeds(arm: Arm) -> str:
    return " ".join("?" if seed is None else str(seed) for seed in arm.seeds)


def _interval(interval: stats.Interval | stats.Paired, sign: str = "") -> str:
    if math.isnan(interval.mean):
        return "—"
    text = f"{interval.mean:{sign}.4g}"
    if not math.isnan(interval.low):
        text += f" [{interval.low:{sign}.4g}, {interval.high:{sign}.4g}]"
    return text


def _difference(s: ArmSummary, metric: str) -> str:
    if s.is_reference:
        return "—"
    diff = s.differences[metric]
    if diff is None:
        return "not paired"  # no seed in common, or seeds repeat within an arm
    text = _interval(diff, "+")
    return text + (" (1 seed)" if diff.n == 1 else "")


def aggregate_section(sweep_dir: Path, rows: list[dict[str, Any]]) -> list[str]:
    """Write sweep_dir/aggregate.csv; return the Markdown section for summary.md."""
    try:
        agg = aggregate(rows)
    except Exception as err:  # the per-job table must be written whatever happens here
        log.exception("Could not aggregate the seeds of %s", sweep_dir)
        return ["", "## Seeds aggregated", "", f"Not computed: {type(err).__name__}: {err}"]
    columns, data = table(agg)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows([_number(v) if isinstance(v, float) else v for v in row] for row in data)
    with atomic_write(sweep_dir / CSV_NAME) as f:
        f.write(out.getvalue())
    return ["", *markdown(agg)]
