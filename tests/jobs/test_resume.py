"""A run killed with SIGKILL mid-training continues with resume=RUN_DIR: same folder,
same W&B run, newest intact checkpoint, full epoch count at the end."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from helpers.project import run_entry_point, start_entry_point

from alexnet_lab.jobs.resume import intact_checkpoint

pytestmark = pytest.mark.slow

EPOCHS, STEPS_PER_EPOCH = 10, 8
RUN = [
    "data=synthetic",
    "data.train_size=256",
    f"data.batch_size={256 // STEPS_PER_EPOCH}",
    "data.val_size=64",
    f"trainer.max_epochs={EPOCHS}",
    "callbacks.step_checkpoint.every_n_train_steps=3",
]


def wait_for_step_checkpoint(run_root: Path, min_step: int, proc, timeout_s=300) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        for path in run_root.glob("*/checkpoints/latest-*.ckpt"):
            step = int(re.search(r"step(\d+)", path.name).group(1))
            if step >= min_step:
                return path.parents[1]
        time.sleep(0.1)
    raise AssertionError("no step checkpoint appeared")


def test_killed_run_resumes_in_its_folder_and_wandb_run(tmp_path: Path):
    proc = start_entry_point("train.py", *RUN, cwd=tmp_path)
    runs = tmp_path / "outputs" / "train" / "runs"
    try:
        run_dir = wait_for_step_checkpoint(runs, min_step=STEPS_PER_EPOCH + 1, proc=proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (run_dir / "metrics.json").exists(), "killed before the end"
    saved_config = (run_dir / ".hydra" / "config.yaml").read_text()
    identity = json.loads((run_dir / "wandb_run.json").read_text())

    run_entry_point("train.py", f"resume={run_dir}", cwd=tmp_path, timeout=600)

    assert list(runs.iterdir()) == [run_dir], "resume reuses the run's folder"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["epochs"] == EPOCHS and metrics["global_step"] == EPOCHS * STEPS_PER_EPOCH
    resumed = metrics["resumed_from"]
    assert Path(resumed["checkpoint"]).parent == run_dir / "checkpoints"
    assert resumed["global_step"] > STEPS_PER_EPOCH and resumed["epoch"] >= 1
    # Every checkpoint left in the folder loads.
    checkpoints = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in checkpoints} >= {"last.ckpt"}
    assert all(intact_checkpoint(p) is not None for p in checkpoints), checkpoints
    last = intact_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert last["global_step"] == EPOCHS * STEPS_PER_EPOCH
    # The run's own config was restored and kept; the resume's Hydra files sit beside it.
    assert (run_dir / ".hydra" / "config.yaml").read_text() == saved_config
    assert (run_dir / ".hydra-resume" / "overrides.yaml").is_file()
    # Same W&B run: same id for both offline segments (`wandb sync` both, in order).
    assert json.loads((run_dir / "wandb_run.json").read_text()) == identity
    segments = sorted(run_dir.glob("wandb/offline-run-*"))
    assert len(segments) == 2 and all(s.name.endswith(identity["id"]) for s in segments)
