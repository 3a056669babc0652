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
And a child that dies fails its job, not the sweep: Lightning's watcher of the children
would SIGKILL this process, and with it the sweep; `RankObserver` ends only the job's
other ranks, rank 0's next collective fails, and the job is recorded as failed, naming
the rank that died and its log.

When something else starts the ranks (torchrun, srun, submitit), Lightning's cluster
environment says so and no process is launched: nothing here changes that path.

And under DDP a SIGTERM does nothing collective where it lands (`agree_on_sigterm`):
Lightning's handler broadcasts from inside the signal handler and its evaluation loop
stops mid-validation on the signalled rank alone, so with uneven validation shards the
ranks meet in different collectives and hang; interrupts.InterruptCheckpoint has the
ranks agree on the stop at points every rank reaches instead.

Also here, what every rank must agree on or must not share: its own random stream
(`SeedPerRank`), the batch split between devices (`batch_per_device`) and a
validation sampler that counts each image once (`eval_sampler`).
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
from lightning.fabric.utilities.distributed import _set_num_threads_if_needed
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers.subprocess_script import (
    _SubprocessScriptLauncher,
)
from lightning.pytorch.trainer.connectors.signal_connector import _SignalConnector
from torch.utils.data import Dataset

from alexnet_lab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# Every private Lightning name this package relies on (here, in tracking.py and in the
# tests), in one place: tests/test_upkeep.py checks each against the installed Lightning,
# so an upgrade that renames or reshapes one fails there and not in a user's run (and
# pyproject.toml pins lightning below its next minor release). "module:Class.name" with
# parameter names: a callable taking exactly those (self left out); "module:Class().name"
# with None: an attribute every instance has.
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
    # tracking.LabWandbLogger: which checkpoints W&B uploads, and under which alias.
    "lightning.pytorch.loggers:WandbLogger._scan_and_log_checkpoints": ("checkpoint_callback",),
    "lightning.pytorch.loggers:WandbLogger()._log_model": None,
    "lightning.pytorch.loggers:WandbLogger()._checkpoint_callbacks": None,
}

# What the launcher sets in the parent's environment (and its children inherit).
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
CONFIG_FLAGS = ("--config-path", "-cp", "--config-dir", "-cd")

_launched: list[JobScriptLauncher] = []  # launchers that started children in this process
CHILD_GRACE_S = 15.0  # after a job that did not complete, how long its ranks get to exit


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


def rank_log(local_rank: int) -> str | None:
    """The log file a child rank of the current Hydra job writes (see job_command)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return os.path.join(hydra_cfg.runtime.output_dir, f"{hydra_cfg.job.name}_rank{local_rank}.log")


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


def reset_after_job(completed: bool = True, timeout_s: float = 120.0) -> list[str]:
    """Leave no distributed state behind for the next job of a sweep.

    Waits for the children this process launched (they end with their run), destroys
    the process group and removes the launcher's environment variables. After a job that
    did not complete, a child that had already died is named (the likely cause: this
    rank only saw its collective fail), then the process group goes first, so children
    still in a collective with this rank fail at once instead of at the backend's
    timeout, and they get CHILD_GRACE_S to end. Returns one line per child named.
    A no-op for runs that launched nothing (single process, torchrun, srun).
    """
    dead: list[str] = []
    while _launched:
        launcher = _launched.pop()
        if launcher.observer is not None:
            # From here on ending the children is our decision, not the observer's.
            launcher.observer._child_processes = []
        ranks = list(enumerate(zip(launcher.procs, launcher.rank_logs, strict=True), start=1))
        if not completed:
            dead += [_died(r, proc, path, wait_s=1.0) for r, (proc, path) in ranks]
            _destroy_process_group()
        for _, (proc, _) in ranks:
            try:
                proc.wait(timeout=timeout_s if completed else CHILD_GRACE_S)
            except subprocess.TimeoutExpired:
                log.warning("Rank process %d did not exit; killing it.", proc.pid)
                proc.kill()
                proc.wait()
        if completed:
            dead += [_died(r, proc, path) for r, (proc, path) in ranks]
        for key in LAUNCH_ENV:
            os.environ.pop(key, None)
        if launcher._omp_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        torch.set_num_threads(launcher._num_threads)
        _destroy_process_group()
    return [line for line in dead if line]


def _died(local_rank: int, proc: subprocess.Popen, rank_log_file: str | None, wait_s=0.0) -> str:
    """'rank N exited with status S (its log: ...)' for a child that ended with an error."""
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        return ""
    if not proc.returncode:
        return ""
    where = f" (its log: {rank_log_file})" if rank_log_file else ""
    return f"rank {local_rank} exited with status {proc.returncode}{where}"


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class RankLocalSigterm(_SignalConnector):
    """Lightning's signal connector, but under DDP its SIGTERM handler only logs: no
    broadcast inside the signal handler (the other ranks are in some other collective, or
    none), no `trainer.received_sigterm` (the evaluation loop would stop this rank
    mid-validation alone) and no forwarding to the ranks this process started (a
    scheduler that signals every task would signal them twice, and a second signal means
    "exit at once"). interrupts.StopSignals records the stop on each rank and
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


def rank_seed(seed: int, rank: int) -> int:
    """The seed of `rank`'s random streams in a run of `seed`.

    Rank 0 keeps the run's own seed, so a one-process run draws exactly what it always
    drew (the committed single-device study results repeat). Other ranks get a 64-bit seed
    that numpy's SeedSequence mixes from (seed, rank): not `seed + rank`, with which
    seed s on rank 1 was seed s+1 on rank 0 and two seeds of a study shared their noise.
    """
    if rank == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, np.uint64)[0])


class SeedPerRank(L.Callback):
    """Reseed torch, numpy and random with `rank_seed(seed, global rank)` once the rank is
    known.

    `seed_everything` runs before the ranks exist, so every rank would draw the same
    dropout masks and PCA colour noise at every step: N ranks, one stream. Reseeding
    here (as timm does) gives each rank its own stream, reproducible for a given seed
    and world size. The model is built before this, so its initialisation is the same on
    every rank (DDP also broadcasts rank 0's weights). PL_GLOBAL_SEED is left alone: the
    training DistributedSampler seeds its shuffle from it, and that permutation must be
    the same on every rank for the ranks' shards to be disjoint.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        seed = rank_seed(self.seed, trainer.global_rank)
        torch.manual_seed(seed)  # CPU and every CUDA device
        np.random.seed(seed % 2**32)  # numpy's global generator takes 32 bits
        random.seed(seed)
        log.debug("Rank %d: random streams seeded with %d", trainer.global_rank, seed)


def world_size(trainer: L.Trainer) -> int:
    """How many processes train together.

    Ranks started by torchrun or srun: the launcher's world size (Lightning checks at
    launch that trainer.devices x trainer.num_nodes matches it). Otherwise the devices
    Lightning resolved (a count, a list, auto) times the nodes.
    """
    env = getattr(trainer.strategy, "cluster_environment", None)
    if (
        env is not None
        and env.creates_processes_externally
        # Our own launcher's children: world size is set only during setup.
        and not isinstance(env, LightningEnvironment)
    ):
        return int(env.world_size())
    return trainer.num_devices * trainer.num_nodes


def batch_per_device(batch_size: int | None, global_batch_size: int | None, world_size: int) -> int:
    """The batch each device loads. `data.global_batch_size` (all devices together, one
    optimizer step) is split evenly; otherwise `data.batch_size` is per device."""
    if global_batch_size is None:
        if batch_size is None:
            raise ConfigError(
                "data.batch_size and data.global_batch_size are both null: set "
                "data.batch_size (images per device) or data.global_batch_size (images per "
                "optimizer step, all devices together)."
            )
        return batch_size
    if global_batch_size % world_size:
        raise ConfigError(
            f"data.global_batch_size={global_batch_size} does not split evenly over "
            f"{world_size} devices (trainer.devices x trainer.num_nodes, or the launcher's "
            f"world size). Use a global batch that is a multiple of {world_size}, or a "
            f"device count that divides {global_batch_size}."
        )
    per_device = global_batch_size // world_size
    if batch_size is not None and batch_size != per_device:
        raise ConfigError(
            f"data.batch_size={batch_size} per device x {world_size} devices = "
            f"{batch_size * world_size} images per step, but data.global_batch_size="
            f"{global_batch_size}. Set one of them: data.batch_size=null to split the global "
            f"batch over the devices, or data.global_batch_size=null for a per-device batch."
        )
    return per_device


def batch_split(datamodule: Any, trainer: L.Trainer) -> dict[str, int]:
    """The batch per device and per optimizer step this run uses, logged at start (a
    ConfigError now, before training, if the global batch does not split evenly)."""
    processes = world_size(trainer)
    per_device = datamodule.per_device_batch_size(processes)
    accumulate = int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
    step = per_device * processes * accumulate
    log.info(
        "Batch: %d images per device x %d devices%s = %d images per optimizer step",
        per_device,
        processes,
        f" x {accumulate} accumulated batches" if accumulate > 1 else "",
        step,
    )
    return {
        "data/batch_size_per_device": per_device,
        "data/world_size": processes,
        "data/global_batch_size": step,
    }


def eval_sampler(
    dataset: Dataset, trainer: L.Trainer | None
) -> UnrepeatedDistributedSampler | None:
    """Under DDP, a validation/test sampler that gives each image to exactly one rank.

    Lightning's DistributedSampler pads a split whose size does not divide by the world
    size with repeated images, which then count twice in the accuracy. This one does not
    pad: ranks may run one batch more or fewer, so evaluation must do no per-step
    collective (metrics are torchmetrics objects, synchronised once at epoch end).
    """
    kwargs = trainer.distributed_sampler_kwargs if trainer is not None else None
    if not kwargs or kwargs.get("num_replicas", 1) <= 1:
        return None  # one process: Lightning's sequential sampler
    if len(dataset) < kwargs["num_replicas"]:
        raise DataError(
            f"The validation split has {len(dataset)} images, fewer than the "
            f"{kwargs['num_replicas']} DDP ranks: every rank needs at least one. Use a larger "
            f"val/ split or fewer devices."
        )
    return UnrepeatedDistributedSampler(dataset, shuffle=False, **kwargs)


# Strategies whose launcher re-runs sys.argv (Lightning's subprocess script launcher).
RELAUNCHING = ("ddp", "fsdp", "deepspeed")
NOT_RELAUNCHING = ("ddp_spawn", "ddp_fork", "ddp_notebook")


def sweep_safe_strategy(trainer: Any, in_sweep: bool) -> dict[str, Any]:
    """Trainer kwargs that keep a run on several devices from re-running the sweep.

    trainer=cpu|gpu with trainer.devices>1 or num_nodes>1 leaves strategy "auto", which
    Lightning turns into DDP with its stock launcher (module doc: inside -m that starts a
    sweep per child). "auto" and "ddp" get SweepSafeDDPStrategy instead, in any run; another
    strategy that relaunches the script is refused inside a sweep.
    """
    strategy = trainer.get("strategy", "auto")
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1) or 1
    several = nodes > 1 or not (devices in (1, "1", "auto") or _one_device_list(devices))
    if not isinstance(strategy, str) or not several:
        return {}
    if strategy in ("auto", "ddp"):
        return {"strategy": SweepSafeDDPStrategy()}
    if in_sweep and strategy.startswith(RELAUNCHING) and strategy not in NOT_RELAUNCHING:
        raise ConfigError(
            f"trainer.strategy={strategy} on {devices} devices x {nodes} nodes inside a sweep "
            f"(-m): its launcher re-runs the whole command, so every rank would start the "
            f"sweep again. Use trainer=ddp (DDP whose ranks run only the current job), or run "
            f"this job on its own without -m."
        )
    return {}


def _one_device_list(devices: Any) -> bool:
    return isinstance(devices, (list, tuple)) and len(devices) == 1
