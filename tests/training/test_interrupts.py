"""Ctrl-C, SIGTERM and a second Ctrl-C: an honest status, a checkpoint where training
stopped, the signal's exit status, W&B told, and one command that continues. Also a
sweep: Ctrl-C stops it after recording the job, the same command continues it, and a
DDP job whose rank dies fails alone while the sweep goes on.

The signals are real: a probe callback (tests/helpers/interrupt_probe.py) sends them to its own
process at a chosen optimizer step, so the stop lands at a known point.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.interrupt_probe import signal_at
from helpers.project import SRC, TESTS, compose_config, run_entry_point, tree_digest
from helpers.wandb_offline import summary_and_exit
from omegaconf import OmegaConf

from alexnet_lab.files import write_json_atomic
from alexnet_lab.jobs.commands import continue_command
from alexnet_lab.jobs.folder import hydra_subdir
from alexnet_lab.jobs.resume import intact_checkpoint, remove_cut_writes
from alexnet_lab.runs import run_task
from alexnet_lab.sweeps.guard import RunDirGuard
from alexnet_lab.training.lightning_private import RankObserver
from alexnet_lab.training.signals import RunStopped, StopSignals, stop_signals

STEPS_PER_EPOCH, EPOCHS = 8, 3
RUN = [
    "data=synthetic",
    "data.train_size=128",
    f"data.batch_size={128 // STEPS_PER_EPOCH}",
    "data.val_size=32",
    f"trainer.max_epochs={EPOCHS}",
]
DDP_CPU = [
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.precision=32-true",
]


def train(root: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """src/train.py in `root`, W&B offline, the probes importable; any exit status."""
    return run_entry_point(
        "train.py", *overrides, cwd=root, timeout=timeout, check=False, pythonpath=TESTS
    )


def only_run(root: Path) -> Path:
    (run_dir,) = (root / "outputs" / "train" / "runs").iterdir()
    return run_dir


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def wandb_segments(run_dir: Path) -> list[dict]:
    """What each offline W&B segment of the run recorded, oldest first."""
    return [summary_and_exit(p) for p in sorted(run_dir.glob("wandb/offline-run-*"))]


def checkpoints_intact(run_dir: Path) -> dict[str, dict]:
    found = {p.name: intact_checkpoint(p) for p in (run_dir / "checkpoints").glob("*")}
    assert all(found.values()), f"unreadable or stray files: {found}"
    return found


# --- one run --------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_saves_where_it_stopped_and_resume_finishes_the_run(tmp_path: Path):
    stop_step = STEPS_PER_EPOCH + 3  # mid-epoch 1
    result = train(tmp_path, *RUN, *signal_at(stop_step))
    assert result.returncode == 130, result.stderr[-3000:]
    run_dir = only_run(tmp_path)
    m = metrics(run_dir)
    assert m["status"] == "interrupted" and m["signal"] == "SIGINT"
    assert (m["epoch"], m["global_step"]) == (1, stop_step)
    saved = checkpoints_intact(run_dir)
    assert saved["interrupted.ckpt"]["global_step"] == stop_step
    assert Path(m["checkpoint"]) == run_dir / "checkpoints" / "interrupted.ckpt"
    # The one command that continues, printed as is.
    (command,) = re.findall(r"^\s*(python \S+ resume=\S+)$", result.stdout, re.M)
    assert command == f"python {SRC / 'train.py'} resume={run_dir}"
    (first,) = wandb_segments(run_dir)
    assert first["summary"]["status"] == "interrupted" and first["exit_code"] == 130

    resumed = train(tmp_path, *command.split()[2:])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    m = metrics(run_dir)
    assert m["status"] == "completed" and m["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert m["resumed_from"]["global_step"] == stop_step
    # The checkpoint at the stop has served; what is left all loads.
    assert "interrupted.ckpt" not in checkpoints_intact(run_dir)
    first, second = wandb_segments(run_dir)
    assert first["id"] == second["id"] == json.loads((run_dir / "wandb_run.json").read_text())["id"]
    assert second["summary"]["status"] == "completed" and second["exit_code"] == 0


@pytest.mark.slow
def test_sigterm_is_terminated_with_status_143_and_a_checkpoint(tmp_path: Path):
    result = train(tmp_path, *RUN, *signal_at(5, "SIGTERM"), "trainer.max_epochs=1")
    assert result.returncode == 143, result.stderr[-3000:]
    run_dir = only_run(tmp_path)
    m = metrics(run_dir)
    assert (m["status"], m["signal"], m["global_step"]) == ("terminated", "SIGTERM", 5)
    assert checkpoints_intact(run_dir)["interrupted.ckpt"]["global_step"] == 5
    (segment,) = wandb_segments(run_dir)
    assert segment["summary"]["status"] == "terminated" and segment["exit_code"] == 143
    assert segment["preempting"], "a scheduler's stop is marked preempting in W&B"
    assert f"resume={run_dir}" in result.stdout


@pytest.mark.slow
def test_a_second_ctrl_c_exits_at_once_and_corrupts_nothing(tmp_path: Path):
    # The second Ctrl-C lands while the checkpoint at the stop is being written.
    result = train(tmp_path, *RUN, *signal_at(5, again_on_save=True), "trainer.max_epochs=1")
    assert result.returncode == 130, result.stderr[-3000:]
    run_dir = only_run(tmp_path)
    assert "SIGINT again: exiting now" in result.stdout
    assert metrics(run_dir)["status"] == "interrupted"
    # The save was abandoned whole: no file at the stop, no temporary file left behind.
    assert not (run_dir / "checkpoints").exists() or "interrupted.ckpt" not in checkpoints_intact(
        run_dir
    )
    assert not list(run_dir.rglob("*.tmp"))


@pytest.mark.slow
def test_ddp_ranks_stop_at_the_same_step_when_only_rank_0_is_signalled(tmp_path: Path):
    stop_step = "+callbacks.stop_step._target_=helpers.interrupt_probe.StopStep"
    result = train(tmp_path, *RUN, *DDP_CPU, *signal_at(3), stop_step, "trainer.max_epochs=1")
    assert result.returncode == 130, result.stderr[-3000:]
    run_dir = only_run(tmp_path)
    m = metrics(run_dir)
    assert (m["status"], m["global_step"]) == ("interrupted", 3)
    # Saved together (the save is collective) at that step; rank 1 stopped there too.
    assert checkpoints_intact(run_dir)["interrupted.ckpt"]["global_step"] == 3
    stops = {r: (run_dir / f"stop_step_rank{r}").read_text() for r in (0, 1)}
    assert stops == {0: "3", 1: "3"}, "each rank's own stop step"
    assert (run_dir / "train_rank1.log").is_file()


# --- sweeps ---------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_and_the_same_command_finishes_it(tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    command = ["-m", "seed=1,2,3", *RUN, "trainer.max_epochs=2", *signal_at(11, job=1)]
    result = train(tmp_path, *command, f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 130, result.stderr[-3000:]
    assert sorted(p.name for p in sweep_dir.iterdir() if p.name.isdigit()) == ["0", "1"]
    assert metrics(sweep_dir / "0")["status"] == "completed"
    assert (metrics(sweep_dir / "1")["status"], metrics(sweep_dir / "1")["global_step"]) == (
        "interrupted",
        11,
    )
    summary = (sweep_dir / "summary.md").read_text()
    assert "2 jobs, 1 completed, 1 not completed" in summary and "SIGINT at step 11" in summary
    # The printed command is the sweep's own, with its folder; it is what we run again.
    (printed,) = re.findall(r"^\s*(python \S+ -m .+)$", result.stdout, re.M)
    assert shlex.split(printed)[2:] == [*command, f"hydra.sweep.dir={sweep_dir}"]
    job0 = tree_digest(sweep_dir / "0")
    wandb_id_1 = json.loads((sweep_dir / "1" / "wandb_run.json").read_text())["id"]

    again = train(tmp_path, *shlex.split(printed)[2:])
    assert again.returncode == 0, again.stderr[-3000:]
    assert tree_digest(sweep_dir / "0") == job0, "a completed job is left exactly as it was"
    job1 = metrics(sweep_dir / "1")
    assert job1["status"] == "completed" and job1["resumed_from"]["global_step"] == 11
    assert job1["global_step"] == 2 * STEPS_PER_EPOCH
    ids = {s["id"] for s in wandb_segments(sweep_dir / "1")}
    assert ids == {wandb_id_1}, "the resumed job continued its own W&B run"
    assert (sweep_dir / "1" / ".hydra-resume").is_dir() and (sweep_dir / "1" / ".hydra").is_dir()
    assert metrics(sweep_dir / "2")["status"] == "completed"
    assert "3 jobs, 3 completed, 0 not completed" in (sweep_dir / "summary.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("rank", [1, 0])
def test_a_ddp_rank_that_dies_fails_its_job_and_the_sweep_goes_on(tmp_path: Path, rank: int):
    crash = [
        "+callbacks.crash._target_=helpers.interrupt_probe.Crash",
        f"+callbacks.crash.rank={rank}",
        "+callbacks.crash.step=3",
        "+callbacks.crash.job=0",
    ]
    sweep_dir = tmp_path / "sweep"
    result = train(
        tmp_path,
        "-m",
        "seed=1,2",
        *RUN,
        *DDP_CPU,
        "trainer.max_epochs=1",
        "logger=csv",
        *crash,
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 1, result.stderr[-3000:]  # a job failed; all of them ran
    failed, done = metrics(sweep_dir / "0"), metrics(sweep_dir / "1")
    assert failed["status"] == "failed" and done["status"] == "completed"
    if rank == 1:
        log = sweep_dir / "0" / "train_rank1.log"
        assert f"rank 1 exited with status 1 (its log: {log})" in failed["error"]
        assert "crash on rank 1 at step 3" in log.read_text()
    else:
        assert "crash on rank 0 at step 3" in failed["error"]


# --- the parts, in process ------------------------------------------------------------


def test_a_signal_outside_training_stops_at_once_and_restores_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunStopped) as stopped, stop_signals.installed():
        os.kill(os.getpid(), signal.SIGTERM)
    assert (stopped.value.status, stopped.value.code) == ("terminated", 143)
    assert signal.getsignal(signal.SIGTERM) is before


def test_during_training_the_first_signal_waits_for_the_step_and_the_second_does_not():
    signals = StopSignals()
    with signals.installed():
        signals.fitting = True
        os.kill(os.getpid(), signal.SIGINT)  # recorded only
        assert signals.stop is not None and signals.stop.status == "interrupted"
        with pytest.raises(RunStopped) as again:
            os.kill(os.getpid(), signal.SIGINT)
        assert again.value.at_once and again.value.code == 130


def test_lightnings_own_stops_map_to_statuses():
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    signals = StopSignals()
    assert signals.stop_for(SIGTERMException()).status == "terminated"
    assert signals.stop_for(KeyboardInterrupt()).status == "interrupted"
    assert signals.stop_for(RuntimeError("boom")) is None


def test_hydra_subdir_keeps_a_runs_own_config_and_leaves_finished_jobs_untouched(tmp_path):
    multirun = "RunMode.MULTIRUN"
    assert hydra_subdir(str(tmp_path), multirun, None) == ".hydra"
    assert hydra_subdir(str(tmp_path), "RunMode.RUN", str(tmp_path)) == ".hydra-resume"
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("{}\n")
    assert hydra_subdir(str(tmp_path), multirun, None) == ".hydra-resume"
    assert hydra_subdir(str(tmp_path), "RunMode.RUN", None) == ".hydra"  # torchrun ranks
    write_json_atomic(tmp_path / "metrics.json", {"status": "completed"})
    assert hydra_subdir(str(tmp_path), multirun, None) is None


def sweep_config(sweep_dir: Path, overrides: list[str]):
    return OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(sweep_dir)}, "overrides": {"task": overrides}}}
    )


def test_run_dir_guard_continues_the_same_sweep_and_refuses_another(tmp_path: Path, capsys):
    sweep_dir = tmp_path / "sweep"
    (sweep_dir / "0" / ".hydra").mkdir(parents=True)
    (sweep_dir / "0" / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    write_json_atomic(sweep_dir / "0" / "metrics.json", {"status": "completed"})
    ran = ["+job={seed:1},{seed:2}", "seed=${job.seed}"]  # not resolved at sweep level
    OmegaConf.save(sweep_config(sweep_dir, ran), sweep_dir / "multirun.yaml")
    guard = RunDirGuard()
    guard.on_multirun_start(sweep_config(sweep_dir, ran))  # the same sweep: continued
    with pytest.raises(SystemExit):
        guard.on_multirun_start(sweep_config(sweep_dir, ["seed=1,2,3"]))
    err = capsys.readouterr().err
    assert (
        "holds jobs of another sweep (its sweep ran with: +job={seed:1},{seed:2} seed=${job.seed})"
        in err
    )
    # A job folder that now holds another job's run (a glob that gained a value) is refused.
    job = OmegaConf.create(
        {
            "hydra": {
                "mode": "MULTIRUN",
                "output_subdir": None,
                "runtime": {"output_dir": str(sweep_dir / "0")},
                "overrides": {"task": ["seed=7"]},
            }
        }
    )
    from hydra.types import RunMode

    job.hydra.mode = RunMode.MULTIRUN
    with pytest.raises(SystemExit):
        guard.on_job_start(config=job, task_function=None)
    assert "holds a run of other overrides (seed=1)" in capsys.readouterr().err


def test_continue_command_is_the_sweeps_own_with_its_folder(tmp_path: Path, monkeypatch):
    # As the sweep wrote them: `${job.seed}` is the job's value, not resolved here.
    config = sweep_config(tmp_path, ["ablation=glob(*)", "seed=${job.seed}", "wandb.api_key=abc"])
    config.hydra.overrides.hydra = ["hydra.mode=MULTIRUN", "hydra.launcher.n_jobs=2"]
    config.hydra.job = {"name": "train"}
    OmegaConf.save(config, tmp_path / "multirun.yaml")
    monkeypatch.setattr(sys, "argv", ["src/train.py", "-m", "ablation=glob(*)"])
    assert continue_command(tmp_path) == (
        f"python src/train.py -m hydra.launcher.n_jobs=2 'ablation=glob(*)' 'seed=${{job.seed}}' "
        f"'wandb.api_key=<redacted>' hydra.sweep.dir={tmp_path}"
    )


def test_a_dead_rank_ends_its_job_not_this_process():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.wait()
    observer = RankObserver(main_pid=os.getpid(), child_processes=[child, sibling])
    assert observer._run() is True  # Lightning would now SIGKILL this very process
    assert sibling.wait(timeout=10) == -signal.SIGKILL


def test_a_stopped_job_in_process_records_its_status(tmp_path: Path, monkeypatch):
    """run_task itself: a stop inside the task is recorded and re-raised with its code."""
    cfg = compose_config([*RUN, "logger=none", "callbacks=none"], tmp_path / "run")

    def task(cfg):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("not stopped")

    with pytest.raises(RunStopped) as stopped:
        run_task(task, cfg)
    assert stopped.value.code == 130
    m = metrics(tmp_path / "run")
    assert (m["status"], m["signal"]) == ("interrupted", "SIGINT") and "error" not in m


def test_a_resume_clears_checkpoint_writes_that_a_kill_cut_short(tmp_path: Path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"whole")
    (folder / ".latest-epoch000-step000002.ckpt.3gzlo716.tmp").write_bytes(b"half")
    remove_cut_writes(folder)
    assert [p.name for p in folder.iterdir()] == ["last.ckpt"]
