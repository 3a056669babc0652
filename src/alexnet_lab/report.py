"""Tables and figures of the ablation studies, rebuilt from the runs' own outputs.

Every job of a study sweep leaves <job>/metrics.json (final metrics, overrides,
wall time), <job>/.hydra/config.yaml (its full config) and, with logger=csv,
<job>/csv/metrics.csv (per-epoch train/val metrics). `make report` reads them
and rewrites experiments/<study>/results.md (also pasted into the study's
README between `<!-- results -->` markers), the figures, and the claims table in
experiments/README.md. Nothing here trains; the numbers are whatever the runs left.

    python -m alexnet_lab.report                    # every study under experiments/
    python -m alexnet_lab.report --best-lr          # claim 1: lr per activation x init

Needs the dev extras (pandas, matplotlib): pip install -e '.[dev]'.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: the report runs in make, CI and tests
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

EXPERIMENTS = Path("experiments")
# Claim 1 reads training error at these levels. 25% is the paper's; Fashion-MNIST
# gets there within an epoch (a linear model ends near 16%), so 15% and 10% are
# where a net must learn features and the activations can differ.
FIG1_THRESHOLDS = (0.25, 0.15, 0.10)
# Claims 2-6: "converged" = training error (with the run's own dropout/augmentation) at or
# below these.
CONVERGE_THRESHOLDS = (0.25, 0.15)
CONFIG_KEYS = (
    "model.activation",
    "model.init",
    "model.lrn",
    "model.dropout",
    "model.overlap_pool",
    "model.groups",
    "data.augment",
    "data.pca_std",
    "optimizer.lr",
    "seed",
)


# ---------------------------------------------------------------- loading runs


@dataclass
class Run:
    """One finished job: its config values, final metrics and per-epoch history."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    history: pd.DataFrame  # epoch (1-based), train_err, train_loss, val_err, val_err5, val_loss

    @property
    def steps_per_epoch(self) -> float:
        epochs = self.summary.get("epochs") or len(self.history)
        return self.summary.get("global_step", 0) / epochs if epochs else math.nan


def read_history(csv_path: Path) -> pd.DataFrame:
    """Per-epoch errors from Lightning's CSVLogger file (train and val rows are separate)."""
    columns = ["epoch", "train_err", "train_loss", "val_err", "val_err5", "val_loss"]
    if not csv_path.is_file():
        return pd.DataFrame(columns=columns)
    raw = pd.read_csv(csv_path)
    renames = {
        "train/acc_top1": "train_acc",
        "train/loss_epoch": "train_loss",
        "val/acc_top1": "val_acc",
        "val/acc_top5": "val_acc5",
        "val/loss": "val_loss",
    }
    raw = raw.rename(columns=renames)
    per_epoch = raw.groupby("epoch").agg(
        {c: "last" for c in renames.values() if c in raw.columns}  # "last" skips NaN
    )
    history = pd.DataFrame({"epoch": per_epoch.index.to_numpy() + 1})
    for acc, err in (("train_acc", "train_err"), ("val_acc", "val_err"), ("val_acc5", "val_err5")):
        history[err] = 1.0 - per_epoch[acc].to_numpy() if acc in per_epoch else np.nan
    for loss in ("train_loss", "val_loss"):
        history[loss] = per_epoch[loss].to_numpy() if loss in per_epoch else np.nan
    return history[columns]


def _config_values(job_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    config_file = job_dir / ".hydra" / "config.yaml"
    values: dict[str, Any] = {}
    if config_file.is_file():
        cfg = OmegaConf.load(config_file)
        for key in CONFIG_KEYS:
            values[key] = OmegaConf.select(cfg, key, default=None)
    # Overrides win: they are what the sweep varied, and exist even without .hydra/.
    for override in summary.get("overrides", []):
        key, _, value = override.lstrip("+~").partition("=")
        if key in CONFIG_KEYS:
            values[key] = _parse_value(value)
    return values


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def load_runs(*roots: Path | str) -> tuple[list[Run], list[Path]]:
    """Every job under the roots (searched recursively): (completed runs, failed job dirs)."""
    runs, failed = [], []
    for root in roots:
        for metrics_file in sorted(Path(root).glob("**/metrics.json")):
            job_dir = metrics_file.parent
            summary = json.loads(metrics_file.read_text())
            if summary.get("status") != "completed":
                failed.append(job_dir)
                continue
            history = read_history(job_dir / "csv" / "metrics.csv")
            runs.append(Run(job_dir, _config_values(job_dir, summary), summary, history))
    return runs, failed


# ------------------------------------------------------------------ statistics


def epochs_to(history: pd.DataFrame, column: str, threshold: float) -> float:
    """First epoch (1-based) whose value is at or below threshold; NaN if never."""
    hit = history.loc[history[column] <= threshold, "epoch"]
    return float(hit.iloc[0]) if len(hit) else math.nan


def run_table(runs: Sequence[Run], thresholds: Iterable[float] = CONVERGE_THRESHOLDS):
    """One row per run: config values and the metrics the studies compare."""
    rows = []
    for run in runs:
        h = run.history
        row = dict(run.config)
        row["path"] = str(run.path)
        row["epochs"] = len(h)
        row["steps_per_epoch"] = run.steps_per_epoch
        row["wall_s"] = run.summary.get("wall_s", math.nan)
        row["params"] = run.summary.get("params", math.nan)
        row["final_train_err"] = h["train_err"].iloc[-1] if len(h) else math.nan
        row["final_val_err"] = h["val_err"].iloc[-1] if len(h) else math.nan
        row["final_val_err5"] = h["val_err5"].iloc[-1] if len(h) else math.nan
        row["best_val_err"] = h["val_err"].min() if len(h) else math.nan
        row["best_epoch"] = float(h.loc[h["val_err"].idxmin(), "epoch"]) if len(h) else math.nan
        row["mean_train_err"] = h["train_err"].mean() if len(h) else math.nan
        # Over-fitting signature that dropout/augmentation cannot mask: val loss climbing
        # back up from its minimum.
        row["val_loss_rise"] = h["val_loss"].iloc[-1] - h["val_loss"].min() if len(h) else math.nan
        for t in thresholds:
            row[f"epochs_to_{t:.0%}"] = epochs_to(h, "train_err", t)
        rows.append(row)
    return pd.DataFrame(rows)


def mean_std(values: pd.Series, fmt: str = "{:.1f}", scale: float = 1.0) -> str:
    """'mean ± std' over the runs that have a value, with 'k/n' when some have none."""
    n = len(values)
    present = values.dropna() * scale
    if present.empty:
        return "not reached" if n else "—"
    text = fmt.format(present.mean())
    if len(present) > 1:
        text += " ± " + fmt.format(present.std(ddof=1))
    if len(present) < n:
        text += f" ({len(present)}/{n} reached)"
    return text


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def difference(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """mean(b) - mean(a) and its standard error (unpaired, over seeds)."""
    a, b = a.dropna(), b.dropna()
    if a.empty or b.empty:
        return math.nan, math.nan
    var = (a.var(ddof=1) if len(a) > 1 else 0.0) / len(a)
    var += (b.var(ddof=1) if len(b) > 1 else 0.0) / len(b)
    return float(b.mean() - a.mean()), math.sqrt(var)


def compute_line(table: pd.DataFrame) -> str:
    if table.empty:
        return "no runs yet"
    total = table["wall_s"].sum()
    return (
        f"{len(table)} runs, {total / 60:.1f} min wall time in total "
        f"(CPU, 2 cores shared with other jobs; median {table['wall_s'].median():.0f} s per run)"
    )


def plot_curve(ax, runs: Sequence[Run], column: str, label: str, **style) -> None:
    """Mean over seeds, with a min-max band when there are several; errors in %."""
    if not runs:
        return
    length = min(len(r.history) for r in runs)
    if length == 0:
        return
    scale = 100 if column.endswith("err") else 1
    values = np.stack([r.history[column].to_numpy()[:length] for r in runs]) * scale
    epochs = runs[0].history["epoch"].to_numpy()[:length]
    line = ax.plot(epochs, values.mean(0), label=f"{label} (n={len(runs)})", **style)[0]
    if len(runs) > 1:
        ax.fill_between(epochs, values.min(0), values.max(0), color=line.get_color(), alpha=0.15)


# ------------------------------------------------- claim 1: ReLU vs tanh (Fig. 1)


def best_lrs(table: pd.DataFrame, seed: int = 0) -> dict[tuple[str, str], float]:
    """Per (activation, init): the lr whose seed-`seed` run had the lowest mean training
    error over its epochs (the area under Figure 1's curve: fastest training)."""
    tuned = table[table["seed"] == seed]
    best = {}
    for (act, init), group in tuned.groupby(["model.activation", "model.init"]):
        group = group.sort_values(["mean_train_err", "optimizer.lr"])
        best[(act, init)] = float(group["optimizer.lr"].iloc[0])
    return best


def seed_commands(study_dir: Path) -> list[str]:
    """Claim 1's tuned arms as override strings, from the seed-0 lr grid."""
    runs, _ = load_runs(*sorted((study_dir / "runs").glob("grid*")))
    if not runs:
        return []
    return [
        f"model.activation={act} model.init={init} optimizer.lr={lr:g}"
        for (act, init), lr in sorted(best_lrs(run_table(runs)).items())
    ]


def _tuned(runs: list[Run], best: dict[tuple[str, str], float]) -> list[Run]:
    return [r for r in runs if best.get(_arm(r)[:2]) == _arm(r)[2]]


def _fig1_rows(table: pd.DataFrame, label: str) -> tuple[list[list], dict]:
    """Table rows (one per init x activation) and tanh/relu epoch ratios per init x threshold."""
    rows, speedups = [], {}
    budget = float(table["epochs"].max()) if len(table) else math.nan
    for init in [i for i in ("paper", "default", "kaiming") if i in set(table["model.init"])]:
        arms = {}
        for act in ("relu", "tanh"):
            arm = table[(table["model.activation"] == act) & (table["model.init"] == init)]
            if arm.empty:
                continue
            arms[act] = arm
            rows.append(
                [
                    label,
                    init,
                    act,
                    f"{arm['optimizer.lr'].iloc[0]:g}",
                    len(arm),
                    *[mean_std(arm[f"epochs_to_{t:.0%}"]) for t in FIG1_THRESHOLDS],
                    mean_std(arm["final_train_err"], scale=100),
                ]
            )
        if set(arms) == {"relu", "tanh"}:
            for t in FIG1_THRESHOLDS:
                col = f"epochs_to_{t:.0%}"
                speedups[(init, t)] = _ratio(arms["tanh"][col], arms["relu"][col], budget)
    return rows, speedups


def report_relu_vs_tanh(study_dir: Path) -> dict[str, Any] | None:
    grid_runs, failed = load_runs(*sorted((study_dir / "runs").glob("grid*")))
    if not grid_runs:
        return None
    seed_runs, failed_seeds = load_runs(study_dir / "runs" / "seeds")
    long_runs, failed_long = load_runs(study_dir / "runs" / "long")
    failed += failed_seeds + failed_long
    grid = run_table(grid_runs, FIG1_THRESHOLDS)
    best = best_lrs(grid)
    short = _tuned(grid_runs + seed_runs, best)
    long = _tuned(long_runs, best)
    short_table = run_table(short, FIG1_THRESHOLDS)
    long_table = run_table(long, FIG1_THRESHOLDS)
    inits = [i for i in ("paper", "default", "kaiming") if i in set(grid["model.init"])]
    steps = short_table["steps_per_epoch"].median()
    short_epochs = int(short_table["epochs"].max())

    # Figure 1: training error vs epochs at each arm's tuned lr, one panel per init and length.
    panels = [(init, short, f"init: {init}, {short_epochs} epochs") for init in inits]
    if long:
        long_epochs = int(long_table["epochs"].max())
        for init in sorted({r.config["model.init"] for r in long}):
            panels.append((init, long, f"init: {init}, {long_epochs} epochs"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), sharey=True)
    for ax, (init, pool, title) in zip(np.atleast_1d(axes), panels, strict=True):
        for act, style in (("relu", "-"), ("tanh", "--")):
            lr = best.get((act, init))
            arm = [r for r in pool if _arm(r) == (act, init, lr)]
            plot_curve(ax, arm, "train_err", f"{act}, lr {lr:g}" if lr else act, linestyle=style)
        for t in FIG1_THRESHOLDS:
            ax.axhline(t * 100, color="grey", linewidth=0.6, linestyle=":")
        ax.set_title(title)
        ax.set_xlabel("epochs")
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("training error (%)")
    fig.suptitle("ReLU (solid) vs tanh (dashed): training error, mean and min-max over seeds")
    fig.tight_layout()
    fig.savefig(study_dir / "fig1_train_error.png", dpi=110)
    plt.close(fig)

    # Learning-rate grid (seed 0): how sensitive each arm is to the lr it was given.
    fig, axes = plt.subplots(1, len(inits), figsize=(4.2 * len(inits), 3.4), sharey=True)
    for ax, init in zip(np.atleast_1d(axes), inits, strict=True):
        for act, marker in (("relu", "o"), ("tanh", "s")):
            g = grid[(grid["model.activation"] == act) & (grid["model.init"] == init)]
            g = g.sort_values("optimizer.lr")
            ax.plot(g["optimizer.lr"], g["mean_train_err"] * 100, marker=marker, label=act)
        ax.set_xscale("log")
        ax.set_title(f"init: {init}")
        ax.set_xlabel("learning rate (SGD, momentum 0.9)")
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("mean training error over epochs (%)")
    fig.tight_layout()
    fig.savefig(study_dir / "lr_grid.png", dpi=110)
    plt.close(fig)

    rows, speedups = _fig1_rows(short_table, f"{short_epochs} epochs")
    long_speedups: dict = {}
    if long:
        long_rows, long_speedups = _fig1_rows(
            long_table, f"{int(long_table['epochs'].max())} epochs"
        )
        rows += long_rows
    header = [
        "run length",
        "init",
        "activation",
        "lr",
        "seeds",
        *[f"epochs to {t:.0%} train err" for t in FIG1_THRESHOLDS],
        "final train err (%)",
    ]
    speed_rows = [
        [f"{short_epochs} epochs", init, *[speedups.get((init, t), "—") for t in FIG1_THRESHOLDS]]
        for init in inits
    ]
    speed_rows += [
        [f"{int(long_table['epochs'].max())} epochs", init]
        + [long_speedups.get((init, t), "—") for t in FIG1_THRESHOLDS]
        for init in inits
        if any(k[0] == init for k in long_speedups)
    ]
    grid_rows = []
    for (act, init), g in grid.groupby(["model.activation", "model.init"]):
        for _, r in g.sort_values("optimizer.lr").iterrows():
            grid_rows.append(
                [
                    act,
                    init,
                    f"{r['optimizer.lr']:g}"
                    + (" (tuned)" if best[(act, init)] == r["optimizer.lr"] else ""),
                    f"{r['mean_train_err'] * 100:.1f}",
                    f"{r['final_train_err'] * 100:.1f}",
                    _fmt_epochs(r[f"epochs_to_{FIG1_THRESHOLDS[0]:.0%}"]),
                ]
            )
    all_runs = pd.concat([grid, run_table(seed_runs), run_table(long_runs)])
    text = [
        "# ReLU vs tanh (claim 1, Figure 1): results",
        "",
        "Generated by `make report` from the runs under `runs/`; do not edit by hand.",
        "",
        f"An epoch is one pass over the training subset ({steps:.0f} SGD steps); multiply to get "
        "steps. Training error is Lightning's running mean over each epoch, as cuda-convnet "
        "plotted it. 'not reached': not within the run; 'k/n reached': the mean is over the "
        "k seeds that did.",
        "",
        "## At each arm's tuned learning rate",
        "",
        markdown_table(header, rows),
        "",
        "## Speed-up: epochs tanh needs / epochs ReLU needs (paper: about 6 at 25%)",
        "",
        "'> x': tanh never got there within the run, so x is a lower bound; '< x': ReLU never "
        "did, so x is an upper bound (below 1: tanh was faster).",
        "",
        markdown_table(
            ["run length", "init", *[f"to {t:.0%}" for t in FIG1_THRESHOLDS]], speed_rows
        ),
        "",
        "![training error vs epochs](fig1_train_error.png)",
        "",
        "## Learning-rate grid (seed 0)",
        "",
        "The tuned lr is the one with the lowest mean training error over the epochs "
        "(fastest training, as the paper tuned).",
        "",
        markdown_table(
            [
                "activation",
                "init",
                "lr",
                "mean train err (%)",
                "final train err (%)",
                f"epochs to {FIG1_THRESHOLDS[0]:.0%}",
            ],
            grid_rows,
        ),
        "",
        "![lr grid](lr_grid.png)",
        "",
        f"Compute: {compute_line(all_runs)}." + (f" Failed jobs: {len(failed)}." if failed else ""),
        "",
    ]
    _write_results(study_dir, "\n".join(text))
    seeds = int(short_table.groupby(["model.activation", "model.init"]).size().min())
    long_len = f"{int(long_table['epochs'].max())} ep" if long else ""
    parts = []
    for init in inits:
        use_long = any(k[0] == init for k in long_speedups)
        found = long_speedups if use_long else speedups
        parts.append(
            f"{init} init ({long_len if use_long else f'{short_epochs} ep'}): tanh/relu epochs "
            f"{found.get((init, 0.25), '—')} to 25%, {found.get((init, 0.10), '—')} to 10%"
        )
    ours = "; ".join(parts)
    return {
        "claim": "1. ReLU vs tanh (Fig. 1)",
        "paper": "ReLU reaches 25% training error ×6 faster (CIFAR-10, 4-layer net)",
        "ours": ours,
        "seeds": seeds,
        "compute": f"{all_runs['wall_s'].sum() / 60:.0f} min",
        "verdict": readme_verdict(study_dir) or "see README",
        "link": "relu_vs_tanh/",
    }


def _arm(run: Run) -> tuple:
    c = run.config
    return c["model.activation"], c["model.init"], c["optimizer.lr"]


def _ratio(slow: pd.Series, fast: pd.Series, budget: float) -> str:
    """mean(slow) / mean(fast) in epochs, with '>' when the slow arm never got there."""
    if fast.dropna().empty:  # ReLU never got there: tanh's epochs over the budget bound it
        return "neither reached" if slow.dropna().empty else f"< {slow.mean() / budget:.1f}"
    if slow.dropna().empty:
        return f"> {budget / fast.mean():.1f}"
    return f"{slow.mean() / fast.mean():.1f}"


def _speedup_value(text: str | None) -> float | None:
    if not text:
        return None
    match = re.search(r"[\d.]+", text)
    return float(match.group()) if match else None


def _fmt_params(values: pd.Series) -> str:
    values = values.dropna()
    return f"{int(values.iloc[0]):,}" if len(values) else "—"


def _fmt_epochs(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.0f}"


# ----------------------------------------------------- claims 2-6: one switch off


@dataclass
class Arm:
    label: str
    runs_dir: str  # relative to experiments/


@dataclass
class AblationStudy:
    name: str
    claim: str
    paper: str
    reference: Arm
    variants: list[Arm]
    # Paper's direction: switching the feature off raises val error.
    expect_off_worse: bool = True
    notes: list[str] = field(default_factory=list)


BASELINE = Arm("all paper switches on", "baseline/runs")
ABLATIONS = [
    AblationStudy(
        "dropout",
        "4. Dropout",
        "without it substantial over-fitting; with it about 2× the iterations to converge",
        BASELINE,
        [Arm("dropout 0", "dropout/runs/no_dropout")],
    ),
    AblationStudy(
        "augmentation",
        "5. Augmentation",
        "without crops/flips substantial over-fitting; PCA colour noise −1% top-1 error",
        BASELINE,
        [
            Arm("crops + flips, no PCA noise", "augmentation/runs/no_pca"),
            Arm("no augmentation", "augmentation/runs/no_augment"),
        ],
    ),
    AblationStudy(
        "lrn",
        "2. Local response norm",
        "−1.4% / −1.2% top-1/top-5 error (ImageNet); 13% → 11% (CIFAR-10)",
        BASELINE,
        [Arm("no LRN", "lrn/runs/no_lrn")],
    ),
    AblationStudy(
        "overlap_pool",
        "3. Overlapping pooling",
        "3/2 vs 2/2 pooling: −0.4% / −0.3% top-1/top-5 error",
        BASELINE,
        [Arm("pool 2/2 (no overlap)", "overlap_pool/runs/no_overlap")],
    ),
    AblationStudy(
        "two_towers",
        "6. Two towers",
        "two towers vs one GPU with half the kernels: −1.7% / −1.2% (here: groups=2 vs "
        "groups=1 at the same widths)",
        BASELINE,
        [Arm("one tower (groups=1)", "two_towers/runs/one_tower")],
        expect_off_worse=False,  # not a claim about same-width grouping: report either way
    ),
]


def report_ablation(study: AblationStudy, experiments: Path) -> dict[str, Any] | None:
    study_dir = experiments / study.name
    arms = [study.reference, *study.variants]
    loaded = {arm.label: load_runs(experiments / arm.runs_dir) for arm in arms}
    runs = {label: r for label, (r, _) in loaded.items()}
    failed = sum(len(f) for _, f in loaded.values())
    if not runs[study.reference.label] or not any(runs[a.label] for a in study.variants):
        return None
    tables = {label: run_table(r) for label, r in runs.items() if r}

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, arm in enumerate(arms):
        color = f"C{i}"
        plot_curve(
            axes[0],
            runs[arm.label],
            "train_err",
            f"{arm.label}, train",
            color=color,
            linestyle="--",
        )
        plot_curve(axes[0], runs[arm.label], "val_err", f"{arm.label}, val", color=color)
        plot_curve(
            axes[1],
            runs[arm.label],
            "train_loss",
            f"{arm.label}, train",
            color=color,
            linestyle="--",
        )
        plot_curve(axes[1], runs[arm.label], "val_loss", f"{arm.label}, val", color=color)
    axes[0].set_ylabel("top-1 error (%)")
    axes[1].set_ylabel("cross-entropy loss")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("epochs")
        ax.legend(fontsize=7)
    fig.suptitle(f"{study.claim}: train (dashed) and val (solid), mean and min-max over seeds")
    fig.tight_layout()
    fig.savefig(study_dir / "curves.png", dpi=110)
    plt.close(fig)

    header = [
        "arm",
        "seeds",
        "params",
        "final val top-1 err (%)",
        "best val top-1 err (%)",
        "final val top-5 err (%)",
        "final train err (%)",
        "val loss rise from min",
        *[f"epochs to {t:.0%} train err" for t in CONVERGE_THRESHOLDS],
    ]
    rows = []
    for arm in arms:
        t = tables.get(arm.label)
        if t is None:
            rows.append([arm.label, 0, *["not run"] * (len(header) - 2)])
            continue
        rows.append(
            [
                arm.label,
                len(t),
                _fmt_params(t["params"]),
                mean_std(t["final_val_err"], scale=100),
                mean_std(t["best_val_err"], scale=100),
                mean_std(t["final_val_err5"], scale=100),
                mean_std(t["final_train_err"], scale=100),
                mean_std(t["val_loss_rise"], fmt="{:.3f}"),
                *[mean_std(t[f"epochs_to_{c:.0%}"]) for c in CONVERGE_THRESHOLDS],
            ]
        )
    ref = tables[study.reference.label]
    effect_rows, verdicts = [], []
    for arm in study.variants:
        t = tables.get(arm.label)
        if t is None:
            continue
        d1, se1 = difference(ref["final_val_err"], t["final_val_err"])
        d5, se5 = difference(ref["final_val_err5"], t["final_val_err5"])
        db, seb = difference(ref["best_val_err"], t["best_val_err"])
        verdicts.append(_verdict(d1, se1, study.expect_off_worse))
        effect_rows.append(
            [
                arm.label,
                f"{d1 * 100:+.2f} ± {se1 * 100:.2f}",
                f"{d5 * 100:+.2f} ± {se5 * 100:.2f}",
                f"{db * 100:+.2f} ± {seb * 100:.2f}",
                verdicts[-1],
            ]
        )
    all_runs = pd.concat(tables.values())
    first_variant = tables.get(study.variants[0].label, ref)
    text = [
        f"# {study.claim}: results",
        "",
        "Generated by `make report` from the runs' metrics.json and CSV logs; do not edit by hand.",
        "",
        f"Paper: {study.paper}.",
        "",
        f"Epochs are over the training subset ({ref['steps_per_epoch'].median():.0f} SGD steps "
        "each). Training error is measured during training, i.e. with that arm's dropout and "
        "augmentation active; the validation error is on held-out Fashion-MNIST test images "
        "(centre crop).",
        "",
        markdown_table(header, rows),
        "",
        "## Effect of switching it off",
        "",
        "Arm − reference in percentage points, ± the standard error of that difference over seeds.",
        "",
        markdown_table(
            ["arm", "Δ final val top-1", "Δ final val top-5", "Δ best val top-1", "verdict"],
            effect_rows,
        ),
        "",
        "![curves](curves.png)",
        "",
        f"Compute: {compute_line(all_runs)}." + (f" Failed jobs: {failed}." if failed else ""),
        "",
    ]
    _write_results(study_dir, "\n".join(text))
    d1, se1 = difference(ref["final_val_err"], first_variant["final_val_err"])
    ours = "; ".join(f"{row[0]}: Δ val top-1 {row[1]} pp" for row in effect_rows)
    return {
        "claim": study.claim,
        "paper": study.paper,
        "ours": ours,
        "seeds": int(min(len(t) for t in tables.values())),
        "compute": f"{all_runs['wall_s'].sum() / 60:.0f} min",
        "verdict": readme_verdict(study_dir) or "; ".join(verdicts),
        "link": f"{study.name}/",
    }


def _verdict(delta: float, se: float, expect_off_worse: bool) -> str:
    """Mechanical reading of one difference; the README's narrative verdict says why."""
    if math.isnan(delta):
        return "not run"
    if abs(delta) <= 2 * se or abs(delta) < 0.005:
        return "no difference resolved"
    worse = delta > 0
    if not expect_off_worse:
        return "off is worse" if worse else "off is better"
    return "holds (off is worse)" if worse else "reversed (off is better)"


# -------------------------------------------------------------- writing files


def readme_verdict(study_dir: Path) -> str | None:
    """The study README's hand-written '**Verdict:** ...' line: numbers are generated,
    judgement is not."""
    readme = study_dir / "README.md"
    if not readme.is_file():
        return None
    for line in readme.read_text().splitlines():
        if line.startswith("**Verdict:**"):
            return line.removeprefix("**Verdict:**").strip()
    return None


def _write_results(study_dir: Path, text: str) -> None:
    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / "results.md").write_text(text)
    readme = study_dir / "README.md"
    if readme.is_file():
        _replace_between(readme, "results", "\n".join(text.splitlines()[4:]))


def _replace_between(path: Path, marker: str, body: str) -> None:
    """Rewrite the text between <!-- marker:start --> and <!-- marker:end --> in place."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    text = path.read_text()
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{body.strip()}\n{end}{tail}")


NOT_RUN = {
    "1. ReLU vs tanh (Fig. 1)": "relu_vs_tanh/",
    **{s.claim: f"{s.name}/" for s in ABLATIONS},
}


def report_all(experiments: Path = EXPERIMENTS) -> list[dict[str, Any]]:
    rows = []
    fig1 = report_relu_vs_tanh(experiments / "relu_vs_tanh")
    rows.append(fig1 or {"claim": "1. ReLU vs tanh (Fig. 1)", "link": "relu_vs_tanh/"})
    for study in ABLATIONS:
        row = report_ablation(study, experiments)
        rows.append(row or {"claim": study.claim, "paper": study.paper, "link": f"{study.name}/"})
    rows.sort(key=lambda r: r["claim"])
    table = markdown_table(
        ["claim", "paper", "ours (Fashion-MNIST subset, CPU)", "seeds/arm", "compute", "verdict"],
        [
            [
                f"[{r['claim']}]({r['link']})",
                r.get("paper", ""),
                r.get("ours", "not run here"),
                r.get("seeds", 0),
                r.get("compute", "—"),
                r.get("verdict", "not run here"),
            ]
            for r in rows
        ],
    )
    summaries = [json.loads(p.read_text()) for p in experiments.glob("*/runs/**/metrics.json")]
    total = sum(m.get("wall_s", 0) for m in summaries) / 60
    table += (
        f"\n\nIn all: {len(summaries)} runs, {total:.0f} min of job wall time. The compute "
        "column of claims 2-6 includes their shared reference arm (experiments/baseline)."
    )
    readme = experiments / "README.md"
    if readme.is_file():
        _replace_between(readme, "claims", table)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=Path, default=EXPERIMENTS)
    parser.add_argument(
        "--best-lr",
        action="store_true",
        help="print claim 1's tuned overrides, one 'activation init lr' line per arm",
    )
    args = parser.parse_args(argv)
    if args.best_lr:
        print("\n".join(seed_commands(args.experiments / "relu_vs_tanh")))
        return
    for row in report_all(args.experiments):
        print(f"{row['claim']:<28} {row.get('verdict', 'not run here')}")


if __name__ == "__main__":
    main()
