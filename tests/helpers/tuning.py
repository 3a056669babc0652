"""What the tuning tests share: toy trial overrides and the study's trials.csv read back."""

from __future__ import annotations

import csv
from pathlib import Path

from helpers.project import (
    folder_overrides,
)


def toy(root: Path, *extra: str, epochs: int = 2) -> list[str]:
    return folder_overrides(root, "callbacks=none", *extra, epochs=epochs)


# Trials that need not learn: one step, one validation batch.
ONE_STEP = ["+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1"]


def read_trials(study_dir: Path) -> list[dict]:
    with open(study_dir / "trials.csv") as f:
        return list(csv.DictReader(f))
