"""The submitit launcher runs a sweep: each job in its own process, as on SLURM
(hydra/launcher=submitit_local stands in for submitit_slurm, which needs a cluster), and a
preempted job is requeued and continues where it stopped."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from helpers.project import TESTS, run_entry_point
from helpers.wandb_offline import summary_and_exit

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


def test_preempted_job_is_requeued_and_continues_in_its_folder_and_wandb_run(
    tmp_path: Path, monkeypatch
):
    """submitit's preemption signal (what SLURM sends before a time limit or on preemption)
    mid-epoch: a checkpoint at the step, status preempted, submitit requeues the job, and
    the requeued job finishes from that checkpoint in the same folder and W&B run."""
    sweep_dir = tmp_path / "sweep"
    # The job imports the probe from tests/.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    )
    run_entry_point(
        "train.py",
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=15",
        "data=synthetic",
        "data.train_size=128",
        "data.batch_size=16",
        "data.val_size=32",
        "trainer.max_epochs=2",
        "+callbacks.signal._target_=helpers.interrupt_probe.SendSignal",
        "+callbacks.signal.step=11",
        "+callbacks.signal.signal=SIGUSR2",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
        timeout=900,
    )
    job = sweep_dir / "0"
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["status"] == "completed", metrics.get("error")
    assert metrics["global_step"] == 2 * 8
    resumed = metrics["resumed_from"]
    assert (resumed["checkpoint"], resumed["global_step"]) == (
        str(job / "checkpoints" / "interrupted.ckpt"),
        11,
    )
    assert (job / ".hydra-resume").is_dir(), "the requeued job ran in the same folder"
    logs = "".join(p.read_text() for p in (sweep_dir / ".submitit").rglob("*_log.*"))
    assert "Requeued job" in logs
    first, second = (summary_and_exit(p) for p in sorted(job.glob("wandb/offline-run-*")))
    assert first["id"] == second["id"]
    assert first["summary"]["status"] == "preempted" and first["preempting"]
    assert second["summary"]["status"] == "completed" and second["exit_code"] == 0
