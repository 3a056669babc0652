"""Arms run past the protocol's end: has the reference arm stopped improving, and the run-on
arms of claim 1 and the four-layer LRN comparison (`run_on_row`, `run_on_section`).

`experiments/baseline/runs-48ep/` holds the reference arm's seeds run for 48 epochs instead
of 36 (the same preset with `trainer.max_epochs=48`: lr 1e-4 from epoch 30 on). The table
gives the val error at every validation from the protocol's last LATE epochs on, and each
epoch's change since the protocol's end, paired by seed. Since a job is deterministic, the
continued run's first 36 epochs must equal the committed 36-epoch run's: the table says
whether they do, so the extra epochs are known to extend the very runs the claims use.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from alexnet_lab.analysis import stats
from alexnet_lab.analysis.runs import Run, load_runs
from alexnet_lab.analysis.specs import BASELINE, SCALES
from alexnet_lab.analysis.stats import LATE
from alexnet_lab.analysis.tables import GENERATED, interval, markdown_table, replace_between

CONTINUED_RUNS = "runs-48ep"
MARKER = "continued"
HEADER = ["epoch", "val top-1 err (%)", "change since the protocol's end (points), 95% CI"]


def val_errors(run: Run) -> dict[int, float]:
    """Val top-1 error at each validated epoch."""
    h = run.history.dropna(subset=["val_acc"])
    return dict(zip(h["epoch"].astype(int), 1.0 - h["val_acc"].astype(float), strict=True))


def same_start(protocol: Run, continued: Run) -> bool:
    """The continued run's first epochs equal the protocol run's history, value for value."""
    head = continued.history.iloc[: protocol.epochs].reset_index(drop=True)
    return protocol.epochs <= continued.epochs and head.equals(protocol.history)


def start_difference(protocol: Run, continued: Run) -> float:
    """The largest difference, in accuracy, between a protocol run and the same job run
    on, over the protocol's epochs (train, val and held-out accuracy where both logged)."""
    n = min(protocol.epochs, continued.epochs)
    largest = 0.0
    for column in ("train_acc", "val_acc", "holdout_acc"):
        a = protocol.history[column].to_numpy(dtype=float)[:n]
        b = continued.history[column].to_numpy(dtype=float)[:n]
        both = ~(np.isnan(a) | np.isnan(b))
        if both.any():
            largest = max(largest, float(np.abs(a[both] - b[both]).max()))
    return largest


def run_on_row(label: str, protocol: list[Run], continued: list[Run]) -> list[str]:
    """One run-on arm: its seeds, lengths, and how far its first epochs are from the
    protocol runs' (the same jobs: equal where the machine computes the same bits), over
    what both logged (a run validates at other epochs when it is longer)."""
    by_seed = {r.seed: r for r in protocol}
    paired = [r for r in continued if r.seed in by_seed]
    gaps = [start_difference(by_seed[r.seed], r) for r in paired]
    same, gap = sum(g == 0 for g in gaps), max(gaps, default=math.nan)
    lengths = sorted({r.epochs for r in continued})
    first = max((r.epochs for r in protocol), default=0)
    return [
        label,
        ", ".join(str(r.seed) for r in sorted(continued, key=lambda r: r.seed)),
        f"{first} → {'/'.join(map(str, lengths))}",
        f"{same} of {len(paired)}",
        "—" if math.isnan(gap) else f"{gap * 100:.2f}",
    ]


def run_on_section(rows: list[list[str]], folder: str, schedule: str) -> list[str]:
    """The results.md lines for the arms run on ([] when none was)."""
    if not rows:
        return []
    header = [
        "arm",
        "seeds",
        "epochs: protocol → run on",
        "first epochs equal the protocol runs', value for value",
        "largest difference there (points of accuracy)",
    ]
    return [
        "## Arms run on",
        "",
        f"These arms were run on past the protocol's length (`{folder}/`; {schedule}) and "
        "stand for the arm in every table and figure here; the protocol's own runs stay "
        "committed. The runs keep no checkpoints, so a run-on job trains from the start: "
        "its first epochs repeat the protocol run's, exactly where the machine computes "
        "the same bits and otherwise within the difference shown.",
        "",
        markdown_table(header, rows),
        "",
    ]


def continued_table(experiments: Path) -> str | None:
    """The block for the baseline README, or None when no continued runs exist."""
    arm = experiments / BASELINE.study
    continued = {r.seed: r for r in load_runs(arm / CONTINUED_RUNS / BASELINE.folder)[0]}
    if not continued:
        return None
    protocol = {r.seed: r for r in load_runs(arm / SCALES["cpu"].runs / BASELINE.folder)[0]}
    end = max((r.epochs for r in protocol.values()), default=0)
    errors = {seed: val_errors(r) for seed, r in continued.items()}
    epochs = sorted({e for errs in errors.values() for e in errs if e >= end - LATE})
    at_end = {seed: errs[end] for seed, errs in errors.items() if end in errs}
    rows = []
    for epoch in epochs:
        at = {seed: errs[epoch] for seed, errs in errors.items() if epoch in errs}
        change = interval(stats.paired_difference(at_end, at)) if epoch > end else "—"
        rows.append([epoch, stats.spread([v * 100 for v in at.values()]), change])
    paired = [s for s in sorted(errors) if s in protocol]
    differing = [str(s) for s in paired if not same_start(protocol[s], continued[s])]
    start = f"Their first {end} epochs equal the {end}-epoch runs' histories, value for value, "
    start += f"for {len(paired) - len(differing)} of {len(paired)} seeds"
    start += f" (differing: {', '.join(differing)})." if differing else "."
    last = max(epochs, default=end)
    return (
        f"{GENERATED}\n\nThe reference arm's seeds {', '.join(map(str, sorted(errors)))} run "
        f"to epoch {last} (`{CONTINUED_RUNS}/`); val error as mean ± SD over seeds, its change "
        f"since epoch {end} paired by seed. {start}\n\n{markdown_table(HEADER, rows)}"
    )


def report_continued(experiments: Path) -> None:
    """Rewrite the block in experiments/baseline/README.md; with no continued runs, nothing."""
    text = continued_table(experiments)
    readme = experiments / BASELINE.study / "README.md"
    if text is None or not readme.is_file():
        return
    if not replace_between(readme, MARKER, text):
        print(f"{readme} has no <!-- {MARKER}:start/end --> markers: continued runs not shown.")
