"""Reading the study records: one folder per job, as experiments/*/run.sh leaves them.

What each job keeps (committed, see .gitignore):

    <job>/metrics.json          final metrics, overrides, wall time, image counts
    <job>/history.csv           one row per epoch (HISTORY_COLUMNS), from Lightning's CSV log
    <job>/.hydra/config.yaml    the job's full config (values the overrides did not set)
    <job>/.hydra/overrides.yaml

Lightning's own CSV log (<job>/csv/metrics.csv: a row per logged step) is compacted into
history.csv by `compact_history` after each job and then stays git-ignored with
checkpoints, hparams dumps and logs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from alexnet_lab.errors import DataError

HISTORY = "history.csv"
LIGHTNING_CSV = Path("csv") / "metrics.csv"
# history.csv's columns, from Lightning's logged names.
LOGGED_NAMES = {
    "train/loss_epoch": "train_loss",
    "train/acc_top1": "train_acc",
    "val/loss": "val_loss",
    "val/acc_top1": "val_acc",
    "val/acc_top5": "val_acc5",
    "holdout/loss": "holdout_loss",
    "holdout/acc_top1": "holdout_acc",
}
HISTORY_COLUMNS = ["epoch", *LOGGED_NAMES.values()]
# Config values the studies compare arms by.
CONFIG_KEYS = (
    "model.arch",
    "model.activation",
    "model.init",
    "model.lrn",
    "model.dropout",
    "model.overlap_pool",
    "model.groups",
    "model.width",
    "data.augment",
    "data.pca_std",
    "data.input_scale",
    "optimizer.lr",
    "seed",
)


@dataclass
class Run:
    """One finished job: its config values, final summary and per-epoch history."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    history: pd.DataFrame  # HISTORY_COLUMNS, epoch 1-based; errors derived on demand

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def epochs(self) -> int:
        return len(self.history)

    def errors(self, column: str) -> np.ndarray:
        """1 - accuracy per epoch for an accuracy column (train_acc, val_acc, holdout_acc)."""
        return 1.0 - self.history[column].to_numpy(dtype=float)


def compact_history(csv_path: Path) -> pd.DataFrame:
    """Lightning's CSV log (train, val and step rows apart) as one row per epoch."""
    raw = pd.read_csv(csv_path)
    present = {k: v for k, v in LOGGED_NAMES.items() if k in raw.columns}
    per_epoch = raw.groupby("epoch").agg(dict.fromkeys(present, "last"))  # "last" skips NaN
    history = pd.DataFrame({"epoch": per_epoch.index.to_numpy() + 1})
    for logged, column in LOGGED_NAMES.items():
        history[column] = per_epoch[logged].to_numpy() if logged in present else np.nan
    return history


def write_history(job_dir: Path) -> bool:
    """Write <job>/history.csv from Lightning's log once; True when it wrote one."""
    target, source = job_dir / HISTORY, job_dir / LIGHTNING_CSV
    if target.is_file() or not source.is_file():
        return False
    # Fixed float format: the committed file is the same bytes whoever compacts it.
    compact_history(source).to_csv(target, index=False, float_format="%.6g")
    return True


def compact_all(root: Path) -> int:
    """history.csv for every job under root that has a Lightning log but none yet."""
    return sum(write_history(m.parent) for m in sorted(Path(root).glob("**/metrics.json")))


def read_history(job_dir: Path) -> pd.DataFrame:
    for path, reader in ((job_dir / HISTORY, pd.read_csv), (job_dir / LIGHTNING_CSV, None)):
        if path.is_file():
            return reader(path) if reader else compact_history(path)
    return pd.DataFrame(columns=HISTORY_COLUMNS)


def parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def config_values(job_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = dict.fromkeys(CONFIG_KEYS)
    config_file = job_dir / ".hydra" / "config.yaml"
    if config_file.is_file():
        cfg = OmegaConf.load(config_file)
        for key in CONFIG_KEYS:
            # An interpolation needing Hydra's runtime reads as None; the overrides have it.
            values[key] = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
    # Overrides win: they are what the study varied, and exist even without .hydra/.
    for override in summary.get("overrides", []):
        key, _, value = override.lstrip("+~").partition("=")
        if key in CONFIG_KEYS:
            values[key] = parse_value(value)
    return values


def load_runs(*roots: Path | str) -> tuple[list[Run], list[Path]]:
    """Every job under the roots, searched recursively: (completed runs, failed job dirs)."""
    runs, failed = [], []
    for root in roots:
        for metrics_file in sorted(Path(root).glob("**/metrics.json")):
            job_dir = metrics_file.parent
            try:
                summary = json.loads(metrics_file.read_text())
            except ValueError as err:
                raise DataError(f"{metrics_file} is not valid JSON ({err}).") from None
            if summary.get("status") != "completed":
                failed.append(job_dir)
                continue
            config = config_values(job_dir, summary)
            if config.get("seed") is None:
                raise DataError(f"{job_dir}: no seed in its overrides or .hydra/config.yaml.")
            runs.append(Run(job_dir, config, summary, read_history(job_dir)))
    return runs, failed


def wall_minutes(runs: list[Run]) -> float:
    return sum(r.summary.get("wall_s", 0.0) for r in runs) / 60


def first(values: list[Any]) -> Any:
    """The value all runs share (e.g. the image counts of an arm); NaN when none."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return present[0] if present else math.nan
