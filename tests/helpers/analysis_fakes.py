"""Fake study records with known numbers, for the analysis tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from alexnet_lab.analysis.specs import FIG1_CONDITIONS


def fake_job(
    folder: Path,
    train_err,
    val_err,
    overrides: list[str],
    holdout_err=None,
    status: str = "completed",
    wall_s: float = 60.0,
) -> Path:
    """A job folder as experiments/lib.sh leaves it after compaction."""
    folder.mkdir(parents=True)
    epochs = len(train_err)
    holdout_err = val_err if holdout_err is None else holdout_err
    pd.DataFrame(
        {
            "epoch": np.arange(1, epochs + 1),
            "train_loss": np.asarray(train_err) * 2,
            "train_acc": 1 - np.asarray(train_err, dtype=float),
            "val_loss": np.asarray(val_err, dtype=float) * 2,
            "val_acc": 1 - np.asarray(val_err, dtype=float),
            "val_acc5": 1 - np.asarray(val_err, dtype=float) / 4,
            "holdout_loss": np.asarray(holdout_err, dtype=float) * 2,
            "holdout_acc": 1 - np.asarray(holdout_err, dtype=float),
        }
    ).to_csv(folder / "history.csv", index=False)
    summary = {
        "status": status,
        "overrides": overrides,
        "wall_s": wall_s,
        "epochs": epochs,
        "params": 1000,
        "data/train_images": 5000,
        "data/val_images": 10000,
    }
    (folder / "metrics.json").write_text(json.dumps(summary))
    return folder


def write_ablation(experiments: Path, seeds=range(5)) -> None:
    """Baseline and a dropout-off arm: without dropout the val error at the held-out best
    epoch is 2 points higher for every seed (+/- a little), train error lower."""
    rng = np.random.default_rng(0)
    for seed in seeds:
        noise = rng.normal(0, 0.002)
        fake_job(
            experiments / f"baseline/runs/reference/seed_{seed}",
            [0.5, 0.3, 0.2, 0.15],
            [0.40, 0.25, 0.20 + noise, 0.21 + noise],
            [f"seed={seed}"],
            holdout_err=[0.4, 0.25, 0.2, 0.22],
        )
        fake_job(
            experiments / f"dropout/runs/no_dropout/seed_{seed}",
            [0.3, 0.1, 0.05, 0.01],
            [0.35, 0.23 + noise + 0.02, 0.24, 0.26],
            ["model.dropout=0", f"seed={seed}"],
            holdout_err=[0.35, 0.2, 0.24, 0.26],
        )


def write_fig1(experiments: Path, seeds=range(5)) -> None:
    """Claim 1 for the default-init, unit-scale condition: a bracketed grid (best lr 0.03 for
    both), and tuned runs where tanh needs twice ReLU's epochs to 10%."""
    condition = next(c for c in FIG1_CONDITIONS if c.name == "default-init_unit-scale")
    runs = experiments / "relu_vs_tanh/runs"
    grid = {0.01: 0.5, 0.03: 0.3, 0.1: 0.4, 0.003: 0.6}
    for act in ("relu", "tanh"):
        for lr, level in grid.items():
            fake_job(
                runs / f"grid/{condition.name}/{act}/lr{lr:g}/seed_0",
                [level] * 3,
                [np.nan] * 3,
                [
                    condition.overrides.split()[0],
                    condition.overrides.split()[1],
                    f"model.activation={act}",
                    f"optimizer.lr={lr:g}",
                    "seed=0",
                ],
            )
    for seed in seeds:
        # ReLU reaches 10% at epoch 2 exactly, tanh at epoch 4 exactly.
        curves = {"relu": [0.3, 0.1, 0.05, 0.02], "tanh": [0.5, 0.3, 0.2, 0.1]}
        for act, errs in curves.items():
            fake_job(
                runs / f"tuned/{condition.name}/{act}/lr0.03/seed_{seed}",
                errs,
                [np.nan, np.nan, np.nan, 0.12],
                [
                    *condition.overrides.split(),
                    f"model.activation={act}",
                    "optimizer.lr=0.03",
                    f"seed={seed}",
                ],
            )


CLAIMS_README = "# Claims\n<!-- claims:start -->\nOLD\n<!-- claims:end -->\nkept\n"


def fake_experiments(tmp_path: Path) -> Path:
    """An experiments/ folder with claim 1's default-init, unit-scale arms, the reference
    and a dropout-off arm, a claims README and a dropout README with a verdict line."""
    root = tmp_path / "experiments"
    for study in ("relu_vs_tanh", "baseline", "dropout", "lrn"):
        (root / study).mkdir(parents=True)
    (root / "README.md").write_text(CLAIMS_README)
    (root / "dropout" / "README.md").write_text(
        "intro\n<!-- results:start -->\n<!-- results:end -->\n"
        "**Verdict:** reproduced: here is why.\n"
    )
    (root / "lrn" / "results.md").write_text("an earlier study's results\n")
    write_ablation(root)
    write_fig1(root)
    return root
