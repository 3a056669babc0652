"""Claim 1's learning-rate search: each activation's lr chosen "to make training as fast as
possible" (the lowest mean training error over a short run, i.e. the smallest area under
Figure 1's curve), over a grid extended until the best value has a worse one on each side.

Layout under experiments/relu_vs_tanh/<runs>/:

    grid/<condition>/<activation>/lr<lr>/seed_0     short runs, no validation
    tuned/<condition>/<activation>/lr<lr>/seed_<s>  the tuned lr, every seed, full length

relu_vs_tanh/run.sh asks `python -m alexnet_lab.analysis plan-grid` for the grid jobs still
missing (the starting grid, then one step past whichever edge is best) until it prints
nothing, then `plan-tuned` for the tuned arms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alexnet_lab.analysis.runs import Run, load_runs
from alexnet_lab.analysis.specs import (
    ACTIVATIONS,
    FIG1_CONDITIONS,
    MAX_GRID,
    Fig1Condition,
    ladder_neighbour,
)


def lr_key(lr: float) -> str:
    return f"{float(lr):g}"


def arm_folder(kind: str, condition: Fig1Condition, activation: str, lr: float) -> str:
    return f"{kind}/{condition.name}/{activation}/lr{lr_key(lr)}"


def job_line(kind: str, condition: Fig1Condition, activation: str, lr: float) -> str:
    """'<folder> <overrides...>': what run.sh passes to run_arm."""
    return (
        f"{arm_folder(kind, condition, activation, lr)} {condition.overrides} "
        f"model.activation={activation} optimizer.lr={lr_key(lr)}"
    )


@dataclass
class GridPoint:
    lr: float
    mean_train_err: float  # +inf for a failed (e.g. diverged) job: worse than any


def _failed_lr(job_dir: Path) -> float | None:
    name = job_dir.parent.name  # lr<lr>/seed_0
    return float(name[2:]) if name.startswith("lr") else None


def grid_points(runs_dir: Path, condition: Fig1Condition, activation: str) -> list[GridPoint]:
    folder = runs_dir / "grid" / condition.name / activation
    runs, failed = load_runs(folder)
    points = {
        lr_key(r.config["optimizer.lr"]): GridPoint(float(r.config["optimizer.lr"]), _area(r))
        for r in runs
    }
    for job_dir in failed:
        lr = _failed_lr(job_dir)
        if lr is not None and lr_key(lr) not in points:
            points[lr_key(lr)] = GridPoint(lr, math.inf)
    return sorted(points.values(), key=lambda p: p.lr)


def _area(run: Run) -> float:
    errors = run.errors("train_acc")
    errors = errors[~np.isnan(errors)]
    return float(errors.mean()) if len(errors) else math.inf


def best_point(points: list[GridPoint]) -> GridPoint | None:
    """The fastest lr; ties go to the smaller lr."""
    finite = [p for p in points if math.isfinite(p.mean_train_err)]
    return min(finite, key=lambda p: (p.mean_train_err, p.lr)) if finite else None


def next_grid_lrs(condition: Fig1Condition, points: list[GridPoint]) -> list[float]:
    """The starting grid's missing lrs; else one step past the best lr when it sits at an
    edge (capped at MAX_GRID lrs); else nothing: the optimum is bracketed."""
    done = {lr_key(p.lr) for p in points}
    missing = [lr for lr in condition.start_grid if lr_key(lr) not in done]
    if missing:
        return missing
    best = best_point(points)
    if len(points) >= MAX_GRID:
        return []
    if best is None:  # every lr failed: look lower
        step = ladder_neighbour(points[0].lr, -1)
        return [step] if step else []
    if best.lr == points[0].lr:
        step = ladder_neighbour(best.lr, -1)
    elif best.lr == points[-1].lr:
        step = ladder_neighbour(best.lr, +1)
    else:
        return []
    return [step] if step is not None and lr_key(step) not in done else []


def plan_grid(runs_dir: Path) -> list[str]:
    lines = []
    for condition in FIG1_CONDITIONS:
        for activation in ACTIVATIONS:
            points = grid_points(runs_dir, condition, activation)
            for lr in next_grid_lrs(condition, points):
                lines.append(job_line("grid", condition, activation, lr))
    return lines


def tuned_lrs(runs_dir: Path) -> dict[tuple[str, str], tuple[float, bool]]:
    """(condition name, activation) -> (best lr, bracketed?) for every arm with a grid."""
    tuned = {}
    for condition in FIG1_CONDITIONS:
        for activation in ACTIVATIONS:
            points = grid_points(runs_dir, condition, activation)
            best = best_point(points)
            if best is None:
                continue
            bracketed = points[0].lr < best.lr < points[-1].lr
            tuned[(condition.name, activation)] = (best.lr, bracketed)
    return tuned


def plan_tuned(runs_dir: Path) -> list[str]:
    by_name = {c.name: c for c in FIG1_CONDITIONS}
    return [
        job_line("tuned", by_name[name], activation, lr)
        for (name, activation), (lr, _) in tuned_lrs(runs_dir).items()
    ]


def tuned_overrides(runs_dir: Path, condition_name: str, activation: str) -> str:
    """The tuned lr of one arm as an override (lrn/run.sh reuses ReLU's for the 4-layer net)."""
    found = tuned_lrs(runs_dir).get((condition_name, activation))
    if found is None:
        return ""
    return f"optimizer.lr={lr_key(found[0])}"
