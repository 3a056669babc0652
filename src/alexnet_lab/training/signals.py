"""Ctrl-C, SIGTERM and a scheduler's preemption end a run cleanly, with nothing lost.

| signal                                  | metrics.json status | exit status             |
|-----------------------------------------|---------------------|-------------------------|
| SIGINT (Ctrl-C)                         | interrupted         | 130                     |
| SIGTERM (`kill`, a scheduler)           | terminated          | 143                     |
| submitit's preemption signal (USR2)     | preempted           | submitit requeues it    |

During training the first signal only asks for a stop: training ends after the current
optimizer step (every DDP rank at the same one; under DDP a signal during validation
stops after the next step, or at the end of training, so the validation is recorded
whole), `checkpoints/interrupted.ckpt` is written there (atomically, by the trainer's
checkpoint plugin), metrics.json records the status and the step, W&B is told, and
`resume=RUN_DIR` (or rerunning a sweep) continues from that file.
Outside training there is nothing to save and the run stops at once. A second signal ends
the process at once; every file is written atomically, so nothing is left half-written.

Lightning's own SIGTERM handling stays in place for one process (`trainer.received_sigterm`,
its SIGTERMException); this adds SIGINT and the preemption signal to it and turns the
outcome into a status and an exit code. Under DDP each rank only records the signal and
the ranks agree on the stop at the end of every optimizer step and at the end of
training (lightning_private.RankLocalSigterm says why Lightning's handling hangs there). Under
submitit, the preemption signal (SLURM sends it before a time limit, and at preemption
with `PreemptParameters=send_user_signal`) is taken over while the job runs and handed
back to submitit once the run is recorded, so submitit requeues the job; the requeued job
continues from the checkpoint in the same folder and W&B run.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from alexnet_lab.training.lightning_private import agree_on_sigterm

log = logging.getLogger(__name__)

INTERRUPT_CHECKPOINT = "interrupted"  # checkpoints/interrupted.ckpt
SIGNAL_STATUS = {
    signal.SIGINT: "interrupted",
    signal.SIGTERM: "terminated",
    signal.SIGUSR2: "preempted",  # the default of submitit's SUBMITIT_PREEMPT_SIGNAL
}
# The exit code a status stands for (also what W&B records for the run).
STOP_EXIT_CODES = {"interrupted": 130, "terminated": 143, "preempted": 128 + signal.SIGUSR2}


def exit_status(signum: int) -> int:
    """What a shell reports for a process ended by `signum` (130 for SIGINT, 143 SIGTERM)."""
    return 128 + int(signum)


class RunStopped(SystemExit):
    """A run ended by a signal. A SystemExit: left uncaught, Python exits quietly with the
    signal's exit status; `except Exception` (a sweep's per-job guard) lets it through."""

    def __init__(self, signum: int, at_once: bool = False, status: str | None = None):
        super().__init__(exit_status(signum))
        self.signum = int(signum)
        self.status = status or SIGNAL_STATUS.get(signal.Signals(signum), "terminated")
        self.signal_name = signal.Signals(signum).name
        self.at_once = at_once  # a second signal: no checkpoint, out now


def preemption_handler() -> tuple[int, Any] | None:
    """(signal, handler) when this process is a submitit job: submitit requeues the job
    from a Python handler on its preemption signal (USR2 unless SUBMITIT_PREEMPT_SIGNAL)."""
    signum = getattr(signal, f"SIG{os.environ.get('SUBMITIT_PREEMPT_SIGNAL', 'USR2')}", None)
    if signum is None:
        return None
    handler = signal.getsignal(signum)
    if callable(handler) and getattr(handler, "__module__", "").startswith("submitit"):
        return signum, handler
    return None


class StopSignals:
    """While a run is in progress: SIGINT, SIGTERM (and submitit's preemption signal)
    request a stop at the end of the optimizer step, or stop at once outside training.

    One per process (`stop_signals`); nested runs (a tuning trial inside a tuning job)
    share it, and the outermost one installs and restores the handlers.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.stop: RunStopped | None = None
        self.fitting = False  # set by InterruptCheckpoint: a stop can wait for the step's end
        self.reached: dict[str, Any] = {}  # epoch, step and checkpoint of the stop
        self._previous: dict[int, Any] = {}
        self._preemption: tuple[int, Any] | None = None

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        # Signal handlers can only be set from the main thread; elsewhere (a run started
        # from a thread) Python's defaults stay and Lightning still handles SIGTERM.
        owner = self.depth == 0 and threading.current_thread() is threading.main_thread()
        if owner:
            self._install()
        self.depth += 1
        try:
            yield self
        finally:
            self.depth -= 1
            if owner:
                self._restore()

    def _install(self) -> None:
        self.stop, self.fitting, self.reached = None, False, {}
        self._preemption = preemption_handler()
        signums = [signal.SIGINT, signal.SIGTERM]
        if self._preemption is not None:
            signums.append(self._preemption[0])
        self._previous = {s: signal.signal(s, self._handle) for s in signums}

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        stop, preemption = self.stop, self._preemption
        self._previous, self._preemption, self.stop, self.fitting = {}, None, None, False
        if stop is not None and preemption is not None and stop.signum == preemption[0]:
            # The run is recorded; submitit now saves its requeue state, requeues the job
            # and exits (a SystemExit that replaces this run's own).
            log.info("Handing the preemption to submitit: the job is requeued.")
            preemption[1](stop.signum, None)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop is not None:  # a second signal: no more waiting
            log.warning("%s again: exiting now.", signal.Signals(signum).name)
            raise RunStopped(self.stop.signum, at_once=True, status=self.stop.status)
        preempted = self._preemption is not None and signum == self._preemption[0]
        self.stop = RunStopped(signum, status="preempted" if preempted else None)
        if self.fitting:
            log.warning(
                "%s: stopping after this training step and saving a checkpoint there "
                "(send it again to exit at once).",
                self.stop.signal_name,
            )
            return
        raise self.stop

    def stop_for(self, err: BaseException) -> RunStopped | None:
        """The stop an exception stands for, or None when it is not a stop: ours, Lightning's
        SIGTERMException, or a KeyboardInterrupt where no handler of ours was installed
        (Lightning turns that into sys.exit(1))."""
        if isinstance(err, RunStopped):
            return err
        if isinstance(err, SIGTERMException):
            return self.stop or RunStopped(signal.SIGTERM)
        if isinstance(err, KeyboardInterrupt) or isinstance(err.__context__, KeyboardInterrupt):
            return self.stop or RunStopped(signal.SIGINT)
        return None


stop_signals = StopSignals()


class InterruptCheckpoint(Callback):
    """Ends training at the end of the optimizer step after a stop signal and saves
    `checkpoints/interrupted.ckpt` there; the file is removed when a later fit of the run
    completes. Lightning's OnExceptionCheckpoint, but for stops only (a diverged or
    crashed run must not leave its last, broken state as the newest checkpoint) and not a
    `Checkpoint`: one of those in the callbacks stops Lightning adding its default
    ModelCheckpoint (callbacks=none) and can become `trainer.checkpoint_callback`.

    Under DDP the ranks agree each step on whether any of them was signalled (one
    all-reduce), so all stop at the same step and save one checkpoint together.
    """

    def __init__(self, dirpath: str | Path, filename: str = INTERRUPT_CHECKPOINT) -> None:
        self.ckpt_path = str(Path(dirpath) / f"{filename}.ckpt")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        agree_on_sigterm(trainer)  # under DDP, no collective where a SIGTERM lands

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        stop_signals.fitting = True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        stop_signals.fitting = False

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        self._stop_if_requested(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        # Under DDP the ranks may run different numbers of validation batches (see
        # data.sharding.eval_sampler), so no collective here: they stop at the next step.
        if trainer.world_size == 1:
            self._stop_if_requested(trainer)

    def on_train_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        # A signal during the last validation under DDP: no training step follows, and every
        # rank gets here. (A checkpoint saved before the next epoch's first step does not
        # resume: Lightning then takes that epoch as done.)
        self._stop_if_requested(trainer)

    @staticmethod
    def _stop_if_requested(trainer: L.Trainer) -> None:
        stop = stop_signals.stop
        signum = stop.signum if stop else (signal.SIGTERM if trainer.received_sigterm else 0)
        if trainer.world_size > 1:  # the signal any rank received, on every rank
            agreed = torch.tensor(signum, device=trainer.strategy.root_device)
            signum = int(trainer.strategy.reduce(agreed, reduce_op="max"))
        if signum:
            raise stop if stop is not None and stop.signum == signum else RunStopped(signum)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception) -> None:
        # Only a stop raised from the training loop has a state worth saving: before
        # on_fit_start a resumed run's weights are not even restored yet.
        fitting, stop_signals.fitting = stop_signals.fitting, False
        stop = stop_signals.stop_for(exception)
        if not fitting or stop is None or stop.at_once:
            return
        trainer.save_checkpoint(self.ckpt_path)  # every rank: collective, rank 0 writes
        stop_signals.reached = {
            "epoch": int(trainer.current_epoch),
            "global_step": int(trainer.global_step),
            "checkpoint": self.ckpt_path,
        }
        log.info("Checkpoint at the stop (step %d): %s", trainer.global_step, self.ckpt_path)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Lightning calls this only when the fit ran to its end.
        if stage == "fit":
            trainer.strategy.remove_checkpoint(self.ckpt_path)
