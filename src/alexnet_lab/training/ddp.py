"""DDP that works inside a Hydra sweep.

Lightning's default DDP launcher starts the other ranks by re-running `sys.argv`. Under
`-m` that is the whole sweep: every child starts its own multirun, extra sweep folders
appear and ranks train different jobs. And after the first job the launcher's
environment variables (LOCAL_RANK, WORLD_SIZE, MASTER_PORT, ...) and the process group
are still there, so the next job believes its ranks were started externally and waits
for processes that never come.

`SweepSafeDDPStrategy` (trainer=ddp; in lightning_private.py with Lightning's other
private APIs) starts each child as a single run of *this job*:
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
ranks meet in different collectives and hang; training.signals.InterruptCheckpoint has the
ranks agree on the stop at points every rank reaches instead.

What every rank must agree on or must not share lives beside this: its own random
stream and the batch split (training/ranks.py), a validation sampler that counts each
image once (data/sharding.py).
"""

from __future__ import annotations

import logging
import os
import subprocess
from typing import Any

import torch

from alexnet_lab.errors import ConfigError
from alexnet_lab.training.lightning_private import SweepSafeDDPStrategy, _launched

log = logging.getLogger(__name__)


# What the launcher sets in the parent's environment (and its children inherit).
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")

CHILD_GRACE_S = 15.0  # after a job that did not complete, how long its ranks get to exit


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
        launcher.retire_observer()  # from here on ending the children is our decision
        ranks = list(enumerate(launcher.children(), start=1))
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
