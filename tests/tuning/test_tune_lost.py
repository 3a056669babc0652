"""src/tune.py when a worker dies: a stopped trial is recorded, a killed one is found on the
next start, failed, and its parameters run again; SQLite and the journal file alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from helpers.interrupt_probe import signal_at
from helpers.project import REPO, make_image_folder, run_entry_point
from helpers.tuning import ONE_STEP, read_trials, toy

from alexnet_lab.tuning.lost import (
    HOST,
    JournalStorageWithBeats,
    pid_namespace,
    process_start_time,
)


def load_trials(study_dir: Path, storage_url: str | None = None) -> list:
    """The study's trials as its storage holds them (not trials.csv, which a killed worker
    never got to write)."""
    storage = storage_url or optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(study_dir / "journal.log"))
    )
    return optuna.load_study(study_name=None, storage=storage).trials


def one_step_study(tmp_path: Path, storage: str | None = None) -> list[str]:
    root = make_image_folder(tmp_path / "images", per_class=2)
    args = [*toy(root, *ONE_STEP, epochs=1), f"tune.dir={tmp_path / 'study'}"]
    args += ["tune.figures=false", *([f"tune.storage={storage}"] if storage else [])]
    return args


def test_sigterm_during_a_trial_records_it_failed_and_a_rerun_goes_on(tmp_path: Path):
    args = one_step_study(tmp_path)
    stopped = run_entry_point(
        "tune.py",
        *args,
        "tune.n_trials=2",
        *signal_at(1, "SIGTERM"),
        cwd=tmp_path,
        check=False,
        pythonpath=REPO / "tests",
    )
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    rows = read_trials(tmp_path / "study")
    assert [(r["number"], r["state"], r["reason"]) for r in rows] == [
        ("0", "FAIL", "terminated by SIGTERM")
    ]
    metrics = json.loads((tmp_path / "study" / "trials" / "0" / "metrics.json").read_text())
    assert metrics["status"] == "terminated" and metrics["tune"]["state"] == "FAIL"

    run_entry_point("tune.py", *args, "tune.n_trials=1", cwd=tmp_path)
    rows = read_trials(tmp_path / "study")
    assert [(r["number"], r["state"]) for r in rows] == [("0", "FAIL"), ("1", "COMPLETE")]


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_a_killed_worker_s_trial_is_failed_and_run_again_on_rerun(tmp_path: Path, storage):
    """kill -9 mid-trial: the rerun fails the trial it left RUNNING (its worker ran on this
    machine and is gone) and runs its parameters again, once; nothing stays RUNNING."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}" if storage == "sqlite" else None
    args = one_step_study(tmp_path, url)
    killed = run_entry_point(
        "tune.py",
        *args,
        "tune.n_trials=2",
        *signal_at(1, "SIGKILL"),
        cwd=tmp_path,
        check=False,
        pythonpath=REPO / "tests",
    )
    assert killed.returncode == -9
    assert [t.state.name for t in load_trials(tmp_path / "study", url)] == ["RUNNING"]
    assert (tmp_path / "study" / "journal.log").exists() == (storage == "journal")

    run_entry_point("tune.py", *args, "tune.n_trials=1", cwd=tmp_path)
    lost, retry = load_trials(tmp_path / "study", url)
    assert (lost.state.name, retry.state.name) == ("FAIL", "COMPLETE")
    assert retry.params == lost.params
    rows = read_trials(tmp_path / "study")
    assert [r["state"] for r in rows] == ["FAIL", "COMPLETE"]
    assert "its worker" in rows[0]["reason"] and "died" in rows[0]["reason"]
    assert rows[1]["reason"] == "retry of lost trial 0"

    run_entry_point("tune.py", *args, "tune.n_trials=1", cwd=tmp_path)  # not retried again
    assert [t.state.name for t in load_trials(tmp_path / "study", url)] == [
        "FAIL",
        "COMPLETE",
        "COMPLETE",
    ]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_silent_trial_of_another_machine_is_lost_after_the_grace_period(tmp_path: Path):
    storage = JournalStorageWithBeats(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log")),
        beats=tmp_path / "heartbeats",
        heartbeat_s=1,
        grace_s=60,
    )
    study = optuna.create_study(storage=storage)
    elsewhere, here_dead, here_alive = (study.ask() for _ in range(3))
    storage.record_heartbeat(elsewhere._trial_id)
    beat = tmp_path / "heartbeats" / f"{elsewhere._trial_id}.json"
    beat.write_text(json.dumps({"host": "another-node", "pid": os.getpid(), "started": "0"}))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    dead_pid = int(gone.stdout)
    (tmp_path / "heartbeats" / f"{here_dead._trial_id}.json").write_text(
        json.dumps(
            {"host": HOST, "pid_namespace": pid_namespace(), "pid": dead_pid, "started": "1"}
        )
    )
    storage.record_heartbeat(here_alive._trial_id)
    assert process_start_time(os.getpid()) is not None
    assert storage._get_stale_trial_ids(study._study_id) == [here_dead._trial_id]

    old = beat.stat().st_mtime - 61
    os.utime(beat, (old, old))  # another machine's worker: silent for longer than grace_s
    assert sorted(storage._get_stale_trial_ids(study._study_id)) == sorted(
        [elsewhere._trial_id, here_dead._trial_id]
    )
    reasons = {t.number: t.system_attrs.get("fail_reason", "") for t in study.trials}
    assert "no heartbeat for 61 s" in reasons[0] and "another-node" in reasons[0]
    assert f"pid {dead_pid}" in reasons[1] and reasons[2] == ""
