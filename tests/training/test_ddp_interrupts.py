"""SIGTERM while a DDP job validates: two gloo ranks whose validation shards are uneven
(one rank runs a batch more), the signal landing mid-validation. The job must end within
a bounded time, with exit status 143 and a checkpoint that resumes, never hang in a
collective that only one rank reached; the validation it landed in is recorded whole and
training stops after the next optimizer step (at the end, after the last validation).

Each run is its own process group, killed whole if it outlives the bound, so a hang
fails the test instead of blocking the suite (and leaves no rank behind).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from csv import DictReader
from pathlib import Path

import pytest
from helpers.project import TESTS, start_entry_point

from alexnet_lab.jobs.resume import intact_checkpoint

STEPS_PER_EPOCH = 4  # 128 images, 16 per rank and step, 2 ranks
RUN = [
    "data=synthetic",
    "data.train_size=128",
    "data.batch_size=16",
    # 33 images: rank 0 gets 17 (batches of 16 and 1), rank 1 gets 16 (one batch).
    "data.val_size=33",
    "trainer.max_epochs=2",
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.precision=32-true",
    "logger=csv",
    "+callbacks.signal._target_=helpers.interrupt_probe.SignalInValidation",
]
BOUND_S = 90  # from the signal to the job's end; a gloo collective waits 30 min


def train_bounded(root: Path, *overrides: str, timeout: int = 240) -> tuple[int, float]:
    """src/train.py in its own process group: (exit status, when it ended). A run still
    going after `timeout` seconds is killed with all its ranks and fails the test."""
    log = (root / "train.out").open("a")  # a resumed run adds to the first one's
    proc = start_entry_point(
        "train.py", *overrides, cwd=root, pythonpath=TESTS, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"the run hung (killed after {timeout} s):\n{tail(root)}")
    finally:
        log.close()
    ended = time.time()
    try:  # a rank left behind would hold the machine; none may outlive the job
        os.killpg(proc.pid, 0)
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"a rank outlived its job:\n{tail(root)}")
    except ProcessLookupError:
        pass
    return code, ended


def tail(root: Path) -> str:
    return (root / "train.out").read_text()[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "params, stop_step",
    [
        # rank 0 at its first of two batches, while rank 1 ends its only one
        (["+callbacks.signal.batch=0"], STEPS_PER_EPOCH + 1),
        # rank 0 at its last batch: rank 1 is already at the epoch's end
        (["+callbacks.signal.batch=1"], STEPS_PER_EPOCH + 1),
        # a scheduler signalling every task
        (["+callbacks.signal.batch=0", "+callbacks.signal.every_rank=true"], STEPS_PER_EPOCH + 1),
        # the last validation: no step follows
        (["+callbacks.signal.batch=0", "trainer.max_epochs=1"], STEPS_PER_EPOCH),
    ],
    ids=["rank0-first-batch", "rank0-last-batch", "every-rank", "last-epoch"],
)
def test_sigterm_while_ddp_validates_ends_bounded_with_143_and_a_checkpoint(
    tmp_path: Path, params: list[str], stop_step: int
):
    code, ended = train_bounded(tmp_path, *RUN, *params)
    (run_dir,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    sent = (run_dir / "sent_rank0").stat().st_mtime
    assert code == 143, tail(tmp_path)
    assert ended - sent < BOUND_S, f"{ended - sent:.0f} s from the signal to the end"
    m = json.loads((run_dir / "metrics.json").read_text())
    assert (m["status"], m["signal"]) == ("terminated", "SIGTERM"), m
    # Usable: a checkpoint that loads, after the step that followed the validation.
    saved = intact_checkpoint(Path(m["checkpoint"]))
    assert saved is not None and saved["global_step"] == m["global_step"] == stop_step, m
    # The validation the signal landed in was recorded whole, not cut short.
    (csv,) = run_dir.glob("csv/**/metrics.csv")
    rows = list(DictReader(csv.open()))
    assert [r["epoch"] for r in rows if r.get("val/acc_top1")] == ["0"], rows
    # ... and the run continues from it to its end.
    code, _ = train_bounded(tmp_path, f"resume={run_dir}")
    m = json.loads((run_dir / "metrics.json").read_text())
    assert code == 0 and m["status"] == "completed", tail(tmp_path)
    assert m["resumed_from"]["global_step"] == stop_step
    assert m["global_step"] == STEPS_PER_EPOCH * (1 if "trainer.max_epochs=1" in params else 2)
