"""Callbacks the interrupt tests add to a run
(`+callbacks.<name>._target_=helpers.interrupt_probe.X`, with tests/ on PYTHONPATH).

`SendSignal` sends a signal to its own process (rank 0's) at a given optimizer step, once
per run folder (a marker file), as Ctrl-C, `kill` or a scheduler would; with
`again_on_save` it sends it once more while the checkpoint at the stop is being written.
`SignalInValidation` sends one during the first validation, at rank 0's validation batch
`batch`, once per run folder: to rank 0 alone (as `kill PID` would) or, with
`every_rank`, each rank to itself (as a scheduler signalling every task would).
`Crash` raises on one rank at a given step. `job=N` limits SendSignal or Crash to sweep
job N (the run folder's name). `StepLog` appends every optimizer step and epoch end the
run trains to `steps.log` in the run folder, across restarts, so a test can tell what
was trained twice.
`StopStep` writes, on every rank, the optimizer step at which training stopped to
`stop_step_rank<N>` in the run folder, so a test can read each rank's own stop.
"""

from __future__ import annotations

import os
import signal as signals
from pathlib import Path

from lightning.pytorch import Callback


def in_job(trainer, job) -> bool:
    return job is None or Path(trainer.default_root_dir).name == str(job)


class SendSignal(Callback):
    def __init__(self, step: int, signal: str = "SIGINT", again_on_save: bool = False, job=None):
        self.step, self.again_on_save, self.job = int(step), again_on_save, job
        self.signum = getattr(signals, signal)
        self.sent = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        marker = Path(trainer.default_root_dir) / f"sent_{self.signum}"
        if trainer.global_step != self.step or not in_job(trainer, self.job):
            return
        if trainer.is_global_zero and not marker.exists():
            marker.touch()
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if self.sent and self.again_on_save:
            self.again_on_save = False
            os.kill(os.getpid(), self.signum)


class SignalInValidation(Callback):
    def __init__(self, batch: int = 0, signal: str = "SIGTERM", every_rank: bool = False):
        self.batch, self.every_rank = int(batch), bool(every_rank)
        self.signum = getattr(signals, signal)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args):
        marker = Path(trainer.default_root_dir) / f"sent_rank{trainer.global_rank}"
        if marker.exists() or trainer.sanity_checking or batch_idx != self.batch:
            return
        if trainer.is_global_zero or self.every_rank:
            marker.touch()
            os.kill(os.getpid(), self.signum)


class Crash(Callback):
    def __init__(self, rank: int, step: int, job=None):
        self.rank, self.step, self.job = int(rank), int(step), job

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if (trainer.global_rank, trainer.global_step) == (self.rank, self.step) and in_job(
            trainer, self.job
        ):
            raise RuntimeError(f"crash on rank {self.rank} at step {self.step}")


class StepLog(Callback):
    def _write(self, trainer, line: str) -> None:
        if trainer.is_global_zero:
            with open(Path(trainer.default_root_dir) / "steps.log", "a") as f:
                f.write(f"{os.getpid()} {line}\n")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._write(trainer, f"step {trainer.global_step}")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._write(trainer, f"epoch_end {trainer.current_epoch} {trainer.global_step}")


class StopStep(Callback):
    def on_exception(self, trainer, pl_module, exception) -> None:
        path = Path(trainer.default_root_dir) / f"stop_step_rank{trainer.global_rank}"
        path.write_text(str(trainer.global_step))


def signal_at(step: int, name: str = "SIGINT", **params) -> list[str]:
    extra = [f"+callbacks.signal.{k}={v}" for k, v in params.items()]
    return [
        "+callbacks.signal._target_=helpers.interrupt_probe.SendSignal",
        f"+callbacks.signal.step={step}",
        f"+callbacks.signal.signal={name}",
        *extra,
    ]
