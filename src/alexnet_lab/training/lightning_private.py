"""Every use of a Lightning private API in this package, in one module.

Written against Lightning 2.6 (pyproject.toml pins `lightning>=2.6,<2.7`): the DDP
launcher whose children run only the current Hydra job, the watcher of those children,
the SIGTERM handler without collectives, and the hooks into WandbLogger's checkpoint
upload. tests/training/test_upkeep.py checks every name in LIGHTNING_PRIVATE_API against the
installed Lightning, so an upgrade that renames one fails there, not in a user's run.
See training/ddp.py for why each piece exists."""

from __future__ import annotations

import csv
import logging
import os
import subprocess
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
from lightning.fabric.utilities.distributed import _set_num_threads_if_needed
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers.subprocess_script import (
    _SubprocessScriptLauncher,
)
from lightning.pytorch.trainer.connectors.signal_connector import _SignalConnector
from lightning.pytorch.utilities import rank_zero_only

from alexnet_lab.jobs.commands import job_command, rank_log

log = logging.getLogger(__name__)


# Every private Lightning name used here (and by the tests), checked against the installed
# Lightning by tests/training/test_upkeep.py. "module:Class.name" with parameter names: a
# callable taking exactly those (self left out); "module:Class().name" with None: an
# attribute every instance has.
_SUBPROCESS = "lightning.fabric.strategies.launchers.subprocess_script"
_PL_SUBPROCESS = "lightning.pytorch.strategies.launchers.subprocess_script"
_SIGNALS = "lightning.pytorch.trainer.connectors.signal_connector"


LIGHTNING_PRIVATE_API: dict[str, tuple[str, ...] | None] = {
    # RankObserver: Lightning's watcher of the child ranks, without its SIGKILL of rank 0.
    f"{_SUBPROCESS}:_ChildProcessObserver": ("main_pid", "child_processes", "sleep_period"),
    f"{_SUBPROCESS}:_ChildProcessObserver._run": (),
    f"{_SUBPROCESS}:_ChildProcessObserver._terminate_all": (),
    f"{_SUBPROCESS}:_ChildProcessObserver()._child_processes": None,
    f"{_SUBPROCESS}:_ChildProcessObserver()._termination_signal": None,
    "lightning.fabric.utilities.distributed:_set_num_threads_if_needed": ("num_processes",),
    # JobScriptLauncher: Lightning's launcher, its children running only this Hydra job.
    f"{_PL_SUBPROCESS}:_SubprocessScriptLauncher": (
        "cluster_environment",
        "num_processes",
        "num_nodes",
    ),
    f"{_PL_SUBPROCESS}:_SubprocessScriptLauncher.launch": ("function", "args", "trainer", "kwargs"),
    f"{_PL_SUBPROCESS}:_SubprocessScriptLauncher._call_children_scripts": (),
    f"{_PL_SUBPROCESS}:_SubprocessScriptLauncher._check_can_spawn_children": (),
    f"{_PL_SUBPROCESS}:_SubprocessScriptLauncher().procs": None,
    f"{_PL_SUBPROCESS}:_SubprocessScriptLauncher().cluster_environment": None,
    "lightning.pytorch.strategies:DDPStrategy._configure_launcher": (),
    "lightning.pytorch.strategies:DDPStrategy()._launcher": None,
    # RankLocalSigterm: Lightning's signal connector, without collectives in the handler.
    f"{_SIGNALS}:_SignalConnector": ("trainer",),
    f"{_SIGNALS}:_SignalConnector._sigterm_notifier_fn": ("signum", "_"),
    f"{_SIGNALS}:_SignalConnector().received_sigterm": None,
    "lightning.pytorch:Trainer()._signal_connector": None,
    # WandbCheckpointUpload (tracking LabWandbLogger): which checkpoints W&B uploads, as what.
    "lightning.pytorch.loggers:WandbLogger._scan_and_log_checkpoints": ("checkpoint_callback",),
    "lightning.pytorch.loggers:WandbLogger()._log_model": None,
    "lightning.pytorch.loggers:WandbLogger()._checkpoint_callbacks": None,
    # KeptCSVLogger: a continued run's CSV log appended to, not deleted.
    "lightning.pytorch.loggers.csv_logs:ExperimentWriter._check_log_dir_exists": (),
    "lightning.pytorch.loggers:CSVLogger()._experiment": None,
    "lightning.pytorch.loggers:CSVLogger()._fs": None,
}


_launched: list[JobScriptLauncher] = []  # launchers that started children in this process


class JobScriptLauncher(_SubprocessScriptLauncher):
    """Lightning's subprocess launcher with children that run only the current job."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.observer: _ChildProcessObserver | None = None
        self.rank_logs: list[str | None] = []
        self._num_threads = torch.get_num_threads()
        self._omp_threads = os.environ.get("OMP_NUM_THREADS")

    def launch(self, function: Callable, *args: Any, trainer: Any = None, **kwargs: Any) -> Any:
        # As Lightning's launch(), keeping the observer so reset_after_job() can retire it.
        self.cluster_environment.validate_settings(
            num_devices=self.num_processes, num_nodes=self.num_nodes
        )
        if not self.cluster_environment.creates_processes_externally:
            self._call_children_scripts()
            self.observer = RankObserver(main_pid=os.getpid(), child_processes=self.procs)
            self.observer.start()
            _launched.append(self)
        _set_num_threads_if_needed(num_processes=self.num_processes)
        return function(*args, **kwargs)

    def children(self) -> list[tuple[subprocess.Popen, str | None]]:
        """The child ranks started for this job, rank 1 first, each with its log file."""
        return list(zip(self.procs, self.rank_logs, strict=True))

    def retire_observer(self) -> None:
        """Stop the observer from acting on these children (reset_after_job ends them)."""
        if self.observer is not None:
            self.observer._child_processes = []

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        self.procs = []
        env = self.cluster_environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["LOCAL_RANK"] = str(env.local_rank())
        os.environ["WORLD_SIZE"] = f"{self.num_processes * self.num_nodes}"
        self.rank_logs = []
        for local_rank in range(1, self.num_processes):
            child_env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            command, cwd = job_command(local_rank)
            self.rank_logs.append(rank_log(local_rank))
            log.debug("Starting rank %d: %s", local_rank, " ".join(command))
            self.procs.append(subprocess.Popen(command, env=child_env, cwd=cwd))


class RankObserver(_ChildProcessObserver):
    """Lightning's watcher of the child ranks, which on a child's death also SIGKILLs this
    process: in a sweep that is every later job. This one ends only the job's other ranks;
    rank 0's next collective then fails (gloo at once) and run_task records the job as
    failed. (A backend that blocks instead gives up at its own timeout.)"""

    def _terminate_all(self) -> None:
        for proc in self._child_processes:
            if proc.poll() is None:
                proc.send_signal(self._termination_signal)


class SweepSafeDDPStrategy(DDPStrategy):
    """DDPStrategy whose launcher restarts only the current Hydra job (see module doc)."""

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if isinstance(self._launcher, _SubprocessScriptLauncher):
            self._launcher = JobScriptLauncher(
                self.cluster_environment, self.num_processes, self.num_nodes
            )


class RankLocalSigterm(_SignalConnector):
    """Lightning's signal connector, but under DDP its SIGTERM handler only logs: no
    broadcast inside the signal handler (the other ranks are in some other collective, or
    none), no `trainer.received_sigterm` (the evaluation loop would stop this rank
    mid-validation alone) and no forwarding to the ranks this process started (a
    scheduler that signals every task would signal them twice, and a second signal means
    "exit at once"). training.signals.StopSignals records the stop on each rank and
    InterruptCheckpoint has the ranks agree on it. One process: Lightning's handling."""

    def _sigterm_notifier_fn(self, signum: Any, frame: Any) -> None:
        if self.trainer.world_size > 1:
            log.info("[rank: %d] Received SIGTERM: %s", self.trainer.global_rank, signum)
            return
        super()._sigterm_notifier_fn(signum, frame)


def agree_on_sigterm(trainer: L.Trainer) -> None:
    """Give `trainer` the RankLocalSigterm connector; call before fit registers handlers
    (a callback's setup does)."""
    if not isinstance(trainer._signal_connector, RankLocalSigterm):
        trainer._signal_connector = RankLocalSigterm(trainer)


class WandbCheckpointUpload(WandbLogger):
    """Lightning's WandbLogger with its private checkpoint upload opened as two hooks for
    tracking.LabWandbLogger: `checkpoint_to_scan(callback)` is what Lightning scans for
    files to upload (and under which alias), `checkpoints_at_finalize()` adds callbacks
    whose files the final scan uploads when log_model is on."""

    def _scan_and_log_checkpoints(self, checkpoint_callback: Any) -> None:
        super()._scan_and_log_checkpoints(self.checkpoint_to_scan(checkpoint_callback))

    def checkpoint_to_scan(self, checkpoint_callback: Any) -> Any:
        return checkpoint_callback

    def checkpoints_at_finalize(self) -> dict[int, Any]:
        return {}

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._log_model:
            self._checkpoint_callbacks.update(self.checkpoints_at_finalize())
        super().finalize(status)


class KeptCSVWriter(ExperimentWriter):
    """Lightning's CSV writer, which deletes an existing metrics.csv when a run continues in
    its folder (resume=RUN_DIR, a sweep job run again, a requeue), so the epochs before the
    restart vanish from it. This one keeps the file and appends; a row logged again after
    a restart from an earlier checkpoint comes later, and readers take the last per epoch."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))


class KeptCSVLogger(CSVLogger):
    """CSVLogger writing with KeptCSVWriter: a continued run's log keeps its first rows."""

    @property
    @rank_zero_experiment
    def experiment(self) -> KeptCSVWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = KeptCSVWriter(log_dir=self.log_dir)
        return self._experiment
