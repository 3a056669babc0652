"""DDP that works inside a Hydra sweep.

Lightning's default DDP launcher starts the other ranks by re-running `sys.argv`. Under
`-m` that is the whole sweep: every child starts its own multirun, extra sweep folders
appear and ranks train different jobs. And after the first job the launcher's
environment variables (LOCAL_RANK, WORLD_SIZE, MASTER_PORT, ...) and the process group
are still there, so the next job believes its ranks were started externally and waits
for processes that never come.

`SweepSafeDDPStrategy` (trainer=ddp) starts each child as a single run of *this job*:
`python src/train.py <the job's overrides> hydra.run.dir=<the job's folder>`, and
`reset_after_job()` (called by run_task after every job) waits for those children,
destroys the process group and removes what the launcher put in the environment.

When something else starts the ranks (torchrun, srun, submitit), Lightning's cluster
environment says so and no process is launched: nothing here changes that path.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import torch
from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
from lightning.fabric.utilities.distributed import _set_num_threads_if_needed
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers.subprocess_script import (
    _SubprocessScriptLauncher,
)

log = logging.getLogger(__name__)

# What the launcher sets in the parent's environment (and its children inherit).
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
CONFIG_FLAGS = ("--config-path", "-cp", "--config-dir", "-cd")

_launched: list[JobScriptLauncher] = []  # launchers that started children in this process


def _hydra_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def job_command(local_rank: int) -> tuple[list[str], str | None]:
    """The command that runs the current Hydra job alone, in its own output folder."""
    from hydra.core.hydra_config import HydraConfig

    import __main__

    if __main__.__spec__ is None:
        command = [sys.executable, os.path.abspath(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    if not HydraConfig.initialized():  # not a Hydra app: Lightning's own behaviour
        return command + sys.argv[1:], None
    hydra_cfg = HydraConfig.get()
    # Keep a non-default config location/name; drop -m and the sweep's parameters.
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg in CONFIG_FLAGS and i + 1 < len(argv):
            command += [arg, argv[i + 1]]
        elif arg.startswith(tuple(f"{flag}=" for flag in CONFIG_FLAGS)):
            command.append(arg)
    command.append(f"--config-name={hydra_cfg.job.config_name}")
    command += list(hydra_cfg.overrides.task)
    command += [
        f"hydra.run.dir={_hydra_quote(hydra_cfg.runtime.output_dir)}",
        # Rank 0 already wrote .hydra/; children add only their own log file.
        "hydra.output_subdir=null",
        f"hydra.job.name={hydra_cfg.job.name}_rank{local_rank}",
    ]
    return command, hydra_cfg.runtime.cwd


class JobScriptLauncher(_SubprocessScriptLauncher):
    """Lightning's subprocess launcher with children that run only the current job."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.observer: _ChildProcessObserver | None = None
        self._num_threads = torch.get_num_threads()
        self._omp_threads = os.environ.get("OMP_NUM_THREADS")

    def launch(self, function: Callable, *args: Any, trainer: Any = None, **kwargs: Any) -> Any:
        # As Lightning's launch(), keeping the observer so reset_after_job() can retire it.
        self.cluster_environment.validate_settings(
            num_devices=self.num_processes, num_nodes=self.num_nodes
        )
        if not self.cluster_environment.creates_processes_externally:
            self._call_children_scripts()
            self.observer = _ChildProcessObserver(main_pid=os.getpid(), child_processes=self.procs)
            self.observer.start()
            _launched.append(self)
        _set_num_threads_if_needed(num_processes=self.num_processes)
        return function(*args, **kwargs)

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        self.procs = []
        env = self.cluster_environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["LOCAL_RANK"] = str(env.local_rank())
        os.environ["WORLD_SIZE"] = f"{self.num_processes * self.num_nodes}"
        for local_rank in range(1, self.num_processes):
            child_env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            command, cwd = job_command(local_rank)
            log.debug("Starting rank %d: %s", local_rank, " ".join(command))
            self.procs.append(subprocess.Popen(command, env=child_env, cwd=cwd))


class SweepSafeDDPStrategy(DDPStrategy):
    """DDPStrategy whose launcher restarts only the current Hydra job (see module doc)."""

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if isinstance(self._launcher, _SubprocessScriptLauncher):
            self._launcher = JobScriptLauncher(
                self.cluster_environment, self.num_processes, self.num_nodes
            )


def reset_after_job(timeout_s: float = 120.0) -> None:
    """Leave no distributed state behind for the next job of a sweep.

    Waits for the children this process launched (they end with their run), destroys
    the process group and removes the launcher's environment variables. A no-op for
    runs that launched nothing (single process, torchrun, srun).
    """
    while _launched:
        launcher = _launched.pop()
        if launcher.observer is not None:
            # The observer kills this process if a child ends with an error; from here
            # on ending the children is our decision.
            launcher.observer._child_processes = []
        for proc in launcher.procs:
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("Rank process %d did not exit; killing it.", proc.pid)
                proc.kill()
                proc.wait()
        for key in LAUNCH_ENV:
            os.environ.pop(key, None)
        if launcher._omp_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        torch.set_num_threads(launcher._num_threads)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
