"""A sweep cut short many ways is finished by running the same command again.

Eight short jobs, two of them DDP with two CPU ranks. Two jobs (one DDP) are killed with
SIGKILL (the sweep, its ranks and W&B's helper: a node lost) at random optimizer steps
and the sweep is interrupted once with Ctrl-C (SIGINT to the whole process group, as a
terminal sends it). After each cut the same command runs again, until it exits 0.

Pass: every job completed exactly once (a completed job's folder is never touched again),
each with one W&B run whose id survived its resumes, no finished epoch trained again (a
resume restarts at most one checkpoint interval back; after Ctrl-C, at the very next
step), every checkpoint left loads, and the summary lists all eight jobs as completed.

SWEEP_TEST_SEED picks other kill points (default 15).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.project import SRC, TESTS, tree_digest

from alexnet_lab.jobs.resume import intact_checkpoint

pytestmark = pytest.mark.slow

JOBS, DDP_JOBS = 8, (1, 5)
EPOCHS, TRAIN_IMAGES, BATCH, EVERY_N_STEPS = 3, 96, 16, 2


def steps_per_epoch(job: int) -> int:
    ranks = 2 if job in DDP_JOBS else 1
    return TRAIN_IMAGES // (BATCH * ranks)


def sweep_command(sweep_dir: Path) -> list[str]:
    specs = ",".join(
        f"{{seed:{job + 1},devices:{2 if job in DDP_JOBS else 1}}}" for job in range(JOBS)
    )
    return [
        "-m",
        f"+job={specs}",
        "seed=${job.seed}",
        "trainer.devices=${job.devices}",
        "trainer=ddp",  # one rank for six of the jobs
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        "data=synthetic",
        f"data.train_size={TRAIN_IMAGES}",
        "data.val_size=16",
        f"data.batch_size={BATCH}",
        f"trainer.max_epochs={EPOCHS}",
        "model.width=0.25",
        f"callbacks.step_checkpoint.every_n_train_steps={EVERY_N_STEPS}",
        "~callbacks.val_predictions",
        "+callbacks.steps._target_=helpers.interrupt_probe.StepLog",
        f"hydra.sweep.dir={sweep_dir}",
    ]


def step_log(job_dir: Path) -> list[tuple[int, str, list[int]]]:
    """(pid, kind, numbers) per line of the job's steps.log, in order."""
    path = job_dir / "steps.log"
    lines = path.read_text().splitlines() if path.is_file() else []
    out = []
    for line in lines:
        pid, kind, *numbers = line.split()
        out.append((int(pid), kind, [int(n) for n in numbers]))
    return out


def last_step(job_dir: Path) -> int:
    steps = [numbers[0] for _, kind, numbers in step_log(job_dir) if kind == "step"]
    return steps[-1] if steps else 0


def completed(job_dir: Path) -> bool:
    try:
        return json.loads((job_dir / "metrics.json").read_text())["status"] == "completed"
    except (OSError, ValueError):
        return False


def run_until_cut(root: Path, sweep_dir: Path, cuts: dict[int, tuple[int, int]]) -> int:
    """Run the sweep; when a job in `cuts` reaches its step, send its signal to the whole
    process group (and drop that cut). Returns the sweep's exit status."""
    env = {
        **os.environ,
        "ALEXNET_LAB_ROOT": str(root),
        "WANDB_MODE": "offline",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    with open(root / "sweep_stderr.log", "a") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(SRC / "train.py"), *sweep_command(sweep_dir)],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group: ranks and W&B's helper included
        )
    deadline = time.monotonic() + 900
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            for job, (signum, at_step) in list(cuts.items()):
                job_dir = sweep_dir / str(job)
                if not completed(job_dir) and last_step(job_dir) >= at_step:
                    os.killpg(proc.pid, signum)
                    del cuts[job]
                    break
            time.sleep(0.05)
        return proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever is left of the group
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_sweep_cut_short_many_ways_finishes_every_job_exactly_once(tmp_path: Path):
    rng = random.Random(int(os.environ.get("SWEEP_TEST_SEED", "15")))
    single_jobs = [j for j in range(JOBS) if j not in DDP_JOBS]
    killed = [rng.choice(DDP_JOBS), rng.choice(single_jobs)]
    interrupted = rng.choice([j for j in single_jobs if j not in killed])
    total = {job: EPOCHS * steps_per_epoch(job) for job in range(JOBS)}
    cuts = {job: (signal.SIGKILL, rng.randint(1, total[job] - 2)) for job in killed}
    cuts[interrupted] = (signal.SIGINT, rng.randint(1, total[interrupted] - 2))
    planned = dict(cuts)

    sweep_dir = tmp_path / "sweep"
    statuses: list[int] = []
    first_seen_completed: dict[int, dict] = {}
    for _ in range(6):
        statuses.append(run_until_cut(tmp_path, sweep_dir, cuts))
        for job in range(JOBS):
            job_dir = sweep_dir / str(job)
            if completed(job_dir):
                now = tree_digest(job_dir)
                assert first_seen_completed.setdefault(job, now) == now, (
                    f"job {job} was touched after it completed"
                )
        if statuses[-1] == 0:
            break
    stderr = (tmp_path / "sweep_stderr.log").read_text()[-3000:]
    assert statuses[-1] == 0, f"{statuses} {stderr}"
    # Each cut ended one run of the sweep with its status: SIGKILL -9, Ctrl-C 130.
    assert sorted(statuses[:-1]) == sorted([-signal.SIGKILL] * 2 + [130]), (planned, statuses)

    ids = set()
    for job in range(JOBS):
        job_dir = sweep_dir / str(job)
        metrics = json.loads((job_dir / "metrics.json").read_text())
        assert metrics["status"] == "completed" and metrics["global_step"] == total[job], job
        # One W&B run per job: every offline segment carries the id stored in the folder.
        run_id = json.loads((job_dir / "wandb_run.json").read_text())["id"]
        segments = sorted(job_dir.glob("wandb/offline-run-*"))
        assert segments and all(s.name.endswith(f"-{run_id}") for s in segments), job
        ids.add(run_id)
        check_no_finished_epoch_repeated(job, job_dir, interrupted_job=job == interrupted)
        for path in (job_dir / "checkpoints").glob("*"):
            assert intact_checkpoint(path) is not None, path
        assert not list(job_dir.rglob("*.tmp"))
    assert len(ids) == JOBS
    for job in set(killed) | {interrupted}:
        attempts = {pid for pid, _, _ in step_log(sweep_dir / str(job))}
        assert len(attempts) >= 2, f"job {job} was cut and resumed"
    summary = (sweep_dir / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + JOBS and all(",completed," in row for row in summary[1:])


def check_no_finished_epoch_repeated(job: int, job_dir: Path, interrupted_job: bool) -> None:
    """Each restart of a job begins after every epoch that had ended, at most one
    checkpoint interval back from where it was cut (after Ctrl-C: the next step), and
    the job trains through to its last step."""
    attempts: dict[int, list[tuple[str, list[int]]]] = {}
    for pid, kind, numbers in step_log(job_dir):
        attempts.setdefault(pid, []).append((kind, numbers))
    per_epoch = steps_per_epoch(job)
    ended_epochs, last = 0, 0
    for index, lines in enumerate(attempts.values()):
        steps = [numbers[0] for kind, numbers in lines if kind == "step"]
        if index:
            first = steps[0]
            assert first > ended_epochs * per_epoch, f"job {job} trained a finished epoch again"
            assert first >= last - EVERY_N_STEPS + 1, f"job {job} went back more than a checkpoint"
            if interrupted_job and index == 1:  # Ctrl-C saved the step it stopped at
                assert first == last + 1, f"job {job} did not resume where Ctrl-C stopped it"
        assert steps == list(range(steps[0], steps[-1] + 1)), f"job {job}: steps skipped"
        ended = [numbers[0] for kind, numbers in lines if kind == "epoch_end"]
        ended_epochs = max([ended_epochs, *(e + 1 for e in ended)])
        last = steps[-1]
    assert last == EPOCHS * per_epoch
