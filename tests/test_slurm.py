"""The submitit launcher runs a sweep: each job in its own process, as on SLURM
(hydra/launcher=submitit_local stands in for submitit_slurm, which needs a cluster)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import run_entry_point

pytestmark = pytest.mark.slow


def test_submitit_local_sweep_runs_every_job_and_summarises(tmp_path: Path):
    run_entry_point(
        "train.py",
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=15",
        "ablation=tanh,no_lrn",
        "data=synthetic",
        "data.train_size=64",
        "data.val_size=32",
        "trainer.max_epochs=1",
        cwd=tmp_path,
        timeout=900,
    )
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    assert (sweep / ".submitit").is_dir(), "jobs went through submitit"
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [j.name for j in jobs] == ["0", "1"]
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["status"] == "completed", metrics.get("error")
        assert len(list(job.glob("wandb/offline-run-*"))) == 1
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["completed", "completed"]
    ablations = sorted(o for r in rows for o in r["overrides"].split() if "ablation=" in o)
    assert ablations == ["ablation=no_lrn", "ablation=tanh"]
