"""Trials whose worker died: found, recorded as failed, and their parameters run again.

A worker killed outright (SIGKILL, the out-of-memory killer, a lost node) cannot tell the
storage, so Optuna would show its trial RUNNING for good. Optuna's heartbeat does the work:
while a trial runs, a thread calls the storage's `record_heartbeat` every
`tune.lost.heartbeat_s`, and before every trial a worker starts it fails the RUNNING trials
the storage calls stale and hands each to the stale-trial callback (here Optuna's
`RetryHeartbeatStaleTrialCallback`: the same parameters again, `tune.lost.retries` times).

RDBStorage keeps its heartbeat in the database; the journal file has none, so the storage
here keeps one: each beat rewrites DIR/heartbeats/<trial id>.json (worker's host, pid
namespace, pid and the process's start time). A trial is stale when its beat file says its
worker ran on this machine (and pid namespace) and that process is gone (at once: a rerun
right after a kill finds it), or when it has not beaten for `tune.lost.grace_s` (a worker on
another machine). The reason goes into
the trial's `fail_reason` system attribute, which trials.csv shows.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from alexnet_lab.errors import ConfigError
from alexnet_lab.files import atomic_write

log = logging.getLogger(__name__)

HOST = socket.gethostname()


def pid_namespace() -> str:
    """Which processes a pid names: containers on one host may share its name, not this."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22), which
    tells a live worker from a later process given the same pid; None: no such process (or
    a zombie). Without /proc, "0" for any process that exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "0"
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
    return None if fields[0] == "Z" else fields[19]


class BeatFiles:
    """The heartbeat files (one per running trial) and the stale test both storages share."""

    def __init__(self, beats: Path, grace_s: int | None) -> None:
        self.beats, self.grace_s = Path(beats), grace_s
        self.beats.mkdir(parents=True, exist_ok=True)

    def write(self, trial_id: int) -> None:
        pid = os.getpid()
        beat = {
            "host": HOST,
            "pid_namespace": pid_namespace(),
            "pid": pid,
            "started": process_start_time(pid),
        }
        with atomic_write(self.beats / f"{trial_id}.json") as f:
            json.dump(beat, f)

    def lost_reason(self, trial: FrozenTrial, trial_id: int) -> str | None:
        """Why `trial` (RUNNING) is lost, None while its worker may be alive. `grace_s`
        None: only a dead worker on this machine counts (the database keeps the rest)."""
        path = self.beats / f"{trial_id}.json"
        try:
            beat = json.loads(path.read_text())
            last = path.stat().st_mtime
        except (OSError, ValueError):
            beat, last = None, (trial.datetime_start.timestamp() if trial.datetime_start else None)
        here = (HOST, pid_namespace())
        if beat and (beat.get("host"), beat.get("pid_namespace", "")) == here:
            if process_start_time(int(beat["pid"])) != beat.get("started"):
                return (
                    f"lost: its worker (pid {beat['pid']} on {HOST}) died without recording "
                    f"an outcome (killed?)"
                )
            return None
        if self.grace_s is None or last is None:
            return None
        silent = time.time() - last
        if silent <= self.grace_s:
            return None
        where = f"on {beat['host']}" if beat else "(no heartbeat file)"
        return f"lost: no heartbeat for {silent:.0f} s from its worker {where}"

    def stale_ids(
        self, storage: BaseStorage, study_id: int, also: list[int], also_reason: str = ""
    ) -> list[int]:
        """The RUNNING trials that are lost (plus `also`, the database's own verdict, for
        `also_reason`), each with its reason recorded before the caller fails it."""
        stale = []
        for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            trial_id = trial._trial_id
            reason = self.lost_reason(trial, trial_id)
            if reason is None and trial_id in also:
                reason = also_reason
            if reason is None:
                continue
            try:
                storage.set_trial_system_attr(trial_id, "fail_reason", reason)
            except UpdateFinishedTrialError:  # another worker got there first
                continue
            stale.append(trial_id)
        return stale


class JournalStorageWithBeats(JournalStorage, BaseHeartbeat):
    """The journal file storage with a heartbeat in files next to it."""

    def __init__(
        self, backend, *, beats: Path, heartbeat_s: int, grace_s: int, callback=None
    ) -> None:
        super().__init__(backend)
        self.beat_files = BeatFiles(beats, grace_s)
        self.heartbeat_s, self.callback = heartbeat_s, callback

    def record_heartbeat(self, trial_id: int) -> None:
        self.beat_files.write(trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return self.beat_files.stale_ids(self, study_id, also=[])

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_s

    def get_heartbeat_stale_trial_callback(self):
        return self.callback


class RDBStorageWithBeats(RDBStorage):
    """RDBStorage (its heartbeat in the database), which also finds a dead worker of this
    machine at once instead of after the grace period."""

    def __init__(self, url: str, *, beats: Path, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.beat_files = BeatFiles(beats, None)

    def record_heartbeat(self, trial_id: int) -> None:
        super().record_heartbeat(trial_id)
        self.beat_files.write(trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale_in_database = super()._get_stale_trial_ids(study_id)
        reason = f"lost: no heartbeat in the database for more than {self.grace_period} s"
        return self.beat_files.stale_ids(self, study_id, stale_in_database, reason)


class RunLostTrialAgain:
    """Optuna's retry callback (the lost trial's parameters as a new WAITING trial, up to
    `retries` times per original trial), saying what it does."""

    def __init__(self, retries: int) -> None:
        self.retries = retries
        self.retry = RetryHeartbeatStaleTrialCallback(max_retry=retries) if retries else None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        history = RetryHeartbeatStaleTrialCallback.retry_history(trial)
        again = self.retry is not None and len(history) < self.retries
        log.warning(
            "Trial %d %s: recorded as failed; %s.",
            trial.number,
            trial.system_attrs.get("fail_reason", "lost"),
            "its parameters run again as the next trial"
            if again
            else f"not run again (tune.lost.retries={self.retries})",
        )
        if self.retry is not None:
            self.retry(study, trial)


def check_lost_settings(lost) -> None:
    for key, low in (("heartbeat_s", 1), ("grace_s", 1), ("retries", 0)):
        value = lost.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(
                f"tune.lost.{key}={value}: use a whole number >= {low} "
                f"(heartbeat_s, grace_s: seconds; retries: times a lost trial runs again)."
            )
    if lost.grace_s <= lost.heartbeat_s:
        raise ConfigError(
            f"tune.lost.grace_s={lost.grace_s} must exceed tune.lost.heartbeat_s="
            f"{lost.heartbeat_s}, or every running trial would look lost between two beats."
        )


def study_storage(url: str | None, study_dir: Path, lost) -> BaseStorage:
    """The study's storage, heartbeat on: the database `url` names, or the journal file in
    the study's folder."""
    check_lost_settings(lost)
    settings = dict(heartbeat_s=int(lost.heartbeat_s), grace_s=int(lost.grace_s))
    beats = study_dir / "heartbeats"
    with warnings.catch_warnings():  # the heartbeat is an "experimental" Optuna feature
        warnings.simplefilter("ignore", ExperimentalWarning)
        callback = RunLostTrialAgain(int(lost.retries))
        if url:
            return RDBStorageWithBeats(
                str(url),
                beats=beats,
                heartbeat_interval=settings["heartbeat_s"],
                grace_period=settings["grace_s"],
                heartbeat_stale_trial_callback=callback,
            )
        backend = JournalFileBackend(str(study_dir / "journal.log"))
        return JournalStorageWithBeats(backend, beats=beats, callback=callback, **settings)


def fail_lost_trials(study: optuna.Study) -> None:
    """What Optuna does before every trial, done now (on opening the study): a rerun's
    first numbers and counts already see the lost trials as failed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
