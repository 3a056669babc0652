"""DDP on CPU (gloo): inside a Hydra sweep, and under torchrun.

Two ranks with lr=0 train nothing, so their validation must equal one process's on
the same data exactly: that holds only if the ranks' metrics are synchronised.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SRC, run_entry_point

pytestmark = pytest.mark.slow

SAME_DATA = [
    "data=synthetic",
    "data.train_size=128",
    "data.val_size=64",  # 32 per rank: no padding by the distributed sampler
    "data.batch_size=16",
    "trainer.max_epochs=2",
    # Weights stay at the (seeded) init, bit for bit in float32 (the step is ~1e-30 of
    # each weight): the same model for 1 and 2 ranks. (lr=0 is refused as a config error.)
    "optimizer.lr=1e-30",
    "callbacks=none",
]
DDP_CPU = [
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.precision=32-true",
]
SWEEP = "model.activation=relu,tanh"


def sweep_jobs(root: Path) -> tuple[Path, list[Path]]:
    (sweep,) = (root / "outputs" / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    return sweep, jobs


def metrics(job: Path) -> dict:
    return json.loads((job / "metrics.json").read_text())


def test_ddp_inside_a_sweep_runs_each_job_once_with_synced_metrics(tmp_path: Path):
    ddp_root, single_root = tmp_path / "ddp", tmp_path / "single"
    ddp_root.mkdir(), single_root.mkdir()
    run_entry_point("train.py", "-m", SWEEP, *SAME_DATA, *DDP_CPU, cwd=ddp_root, timeout=900)
    run_entry_point("train.py", "-m", SWEEP, *SAME_DATA, "trainer=cpu", cwd=single_root)

    # Exactly the sweep's two job folders: no sweep or run started by a child rank.
    assert [p.name for p in (ddp_root / "outputs" / "train").iterdir()] == ["multiruns"]
    assert len(list((ddp_root / "outputs" / "train" / "multiruns").iterdir())) == 1
    sweep, jobs = sweep_jobs(ddp_root)
    assert [j.name for j in jobs] == ["0", "1"]
    _, single_jobs = sweep_jobs(single_root)
    for job, single in zip(jobs, single_jobs, strict=True):
        ddp_m, one_m = metrics(job), metrics(single)
        assert ddp_m["status"] == one_m["status"] == "completed", ddp_m.get("error")
        assert ddp_m["overrides"][0] == one_m["overrides"][0]  # same activation
        # Two ranks really ran: half the optimizer steps per epoch.
        assert one_m["global_step"] == 2 * ddp_m["global_step"] == 2 * 2 * (128 // 32)
        for key in ("val/acc_top1", "val/acc_top5", "val/loss"):
            assert ddp_m[key] == pytest.approx(one_m[key], abs=1e-6), key
        # One W&B run per job, written by rank 0 only; rank 1 left only its log file.
        assert len(list(job.glob("wandb/offline-run-*"))) == 1
        assert (job / "train_rank1.log").is_file()
    ids = {json.loads((j / "wandb_run.json").read_text())["id"] for j in jobs}
    assert len(ids) == 2
    summary = (sweep / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and all(",completed," in row for row in summary[1:])


def test_torchrun_launch_starts_no_extra_processes(tmp_path: Path):
    """Under torchrun every rank exists already: Lightning launches nothing more, and
    both ranks (each running Hydra) share one run folder named after the launch."""
    env = {**os.environ, "ALEXNET_LAB_ROOT": str(tmp_path), "WANDB_MODE": "offline"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    result = subprocess.run(
        [*torchrun, "--nproc-per-node=2", str(SRC / "train.py"), *SAME_DATA, *DDP_CPU],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    assert "_torchrun-" in run_dir.name
    m = metrics(run_dir)
    assert m["status"] == "completed" and m["global_step"] == 2 * (128 // 32)
    # Only torchrun's two ranks: no child started by Lightning (it would log *_rank1.log).
    assert not list(run_dir.glob("*_rank*.log"))
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stdout + result.stderr
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1
