"""Guards for long unattended runs: stop at the first NaN loss, write checkpoints
atomically, never start a job in a finished run's folder (a sweep run again in its own
folder continues it), keep secrets out of the saved config."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from hydra import compose
from hydra.experimental.callback import Callback as HydraCallback
from hydra.types import RunMode
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from alexnet_lab.checks import REDACTED, redact_secrets
from alexnet_lab.errors import ConfigError, TrainingDivergedError
from alexnet_lab.files import atomic_write
from alexnet_lab.resume import finished_job
from alexnet_lab.sweep_guard import (
    ALLOW_KEY,
    SweepLock,
    code_version,
    config_fingerprint,
    differences,
    read_fingerprint,
    record_allowed_change,
)
from alexnet_lab.sweeps import override_list

log = logging.getLogger(__name__)


class StopOnNonFiniteLoss(Callback):
    """Stop at the first NaN/inf training loss, before a checkpoint can store the
    broken weights.

    EarlyStopping(check_finite=True) looks only at a validation metric, so a run
    could save an epoch of NaN weights first. The losses are kept as they are (on the
    device) and read together every `every_n_steps` optimizer steps, before any checkpoint
    is saved (`on_save_checkpoint`), before validation and at the end of an epoch: one
    device sync per check instead of one per step (make bench's loop table). The error
    names the first non-finite step. All ranks decide together at the same points, or one
    rank would stop while the others wait for it forever.
    """

    def __init__(self, every_n_steps: int = 10) -> None:
        whole = isinstance(every_n_steps, int) and not isinstance(every_n_steps, bool)
        if not whole or every_n_steps < 1:
            raise ConfigError(
                f"callbacks.stop_on_nonfinite_loss.every_n_steps={every_n_steps}: use a whole "
                f"number of optimizer steps >= 1."
            )
        self.every_n_steps = every_n_steps
        self._losses: list[torch.Tensor] = []  # since the last check, on the device
        self._where: list[tuple[int, int, int]] = []  # (step, epoch, batch) of each

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._losses.append(loss.detach())
            # global_step counts the optimizer steps taken, this one included.
            self._where.append((trainer.global_step - 1, trainer.current_epoch, batch_idx))
        if trainer.global_step % self.every_n_steps == 0:
            self.check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint):
        self.check(trainer)  # raising here leaves the file on disk as it was

    def check(self, trainer: L.Trainer) -> None:
        """Raise TrainingDivergedError if a loss kept since the last check is not finite."""
        losses, where = self._losses, self._where
        self._losses, self._where = [], []
        finite = torch.ones(0, dtype=torch.bool)
        if losses:  # one row per step: a loss may hold more than one number
            finite = torch.isfinite(torch.stack(losses).reshape(len(losses), -1)).all(1)
        ok = bool(finite.all())  # the one device sync
        if trainer.strategy.reduce_boolean_decision(ok, all=True):
            return
        if ok:
            value = "non-finite on another rank"
            step, epoch, batch_idx = (
                where[-1] if where else (trainer.global_step - 1, trainer.current_epoch, "?")
            )
        else:
            first = int((~finite).nonzero()[0])
            value, (step, epoch, batch_idx) = f"{losses[first].item()}", where[first]
        saved = [c.last_model_path or c.best_model_path for c in trainer.checkpoint_callbacks]
        kept = sorted((p for p in saved if p and os.path.isfile(p)), key=os.path.getmtime)[-1:]
        advice = f"Lower optimizer.lr (it was {trainer.optimizers[0].param_groups[0]['lr']:g})"
        if kept:
            where_kept = f"The last good checkpoint is kept: {kept[0]}. "
            advice += f" or check the data, then start again or resume with ckpt_path={kept[0]}."
        else:
            where_kept = "No checkpoint had been written yet. "
            advice += " or check the data, then start again."
        raise TrainingDivergedError(
            f"The training loss became {value} at step {step} (epoch {epoch}, batch "
            f"{batch_idx}; all counted from 0): training diverged and was stopped. "
            f"{where_kept}{advice}"
        )


class LastCheckpoint(ModelCheckpoint):
    """checkpoints/last.ckpt: the state at the end of every epoch, overwritten each time.

    ModelCheckpoint(save_last=True) in Lightning 2.6 rewrites its last.ckpt only on steps
    where it also saves a top-k checkpoint: after an epoch that did not improve the
    monitored metric, "last" held an older state. Monitoring nothing, with one file kept,
    saves at every epoch end instead.

    It also carries the epoch's metrics (`final_metrics`), saved at the train epoch's end
    when the validation and training means of that epoch are both known: a job killed
    after training but before its metrics.json, run again, trains nothing and records
    these instead of nulls.
    """

    FILENAME = "last"

    def __init__(self, dirpath: str | Path, **kwargs: Any):
        super().__init__(
            dirpath=dirpath,
            filename=self.FILENAME,
            monitor=None,
            save_top_k=1,
            enable_version_counter=False,
            save_on_train_epoch_end=True,
            **kwargs,
        )
        self.final_metrics: dict[str, Any] = {}

    @property
    def path(self) -> str | None:
        return self.best_model_path or None  # with no monitor, the one file it keeps

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Before the save, so the file holds the metrics of the weights it holds.
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        self.final_metrics = {"global_step": trainer.global_step, "metrics": metrics}
        super().on_train_epoch_end(trainer, pl_module)

    def metrics_at(self, global_step: int) -> dict[str, float] | None:
        """The metrics saved with the state at `global_step`, if that is the state saved."""
        if self.final_metrics.get("global_step") != global_step:
            return None
        return self.final_metrics["metrics"]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "final_metrics": self.final_metrics}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.final_metrics = state_dict.pop("final_metrics", {})
        super().load_state_dict(state_dict)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file beside the target, flushed to disk, then
    renamed over it: a kill at any moment leaves the old file or the new one, never
    part of one (Lightning's own save writes into the target file). Loading refuses
    pickled code: weights_only=True, which every checkpoint of this project passes.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):  # object stores: their own write semantics
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_write(path, "wb") as f:
            torch.save(checkpoint, f)

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = None):
        return super().load_checkpoint(path, map_location=map_location or "cpu", weights_only=True)


def finished_run(run_dir: Path) -> bool:
    return finished_job(run_dir) is not None


def saved_overrides(path: Path) -> list[str] | None:
    """The override list Hydra saved (.hydra/overrides.yaml, multirun.yaml's sweep)."""
    try:
        node = OmegaConf.load(path)
    except OSError:
        return None
    if path.name == "multirun.yaml":
        node = OmegaConf.select(node, "hydra.overrides.task")
    return None if node is None else override_list(node)


def without_allow(overrides: list[str]) -> list[str]:
    """Overrides as compared between runs of a sweep: allow_config_change= is not one."""
    return [o for o in overrides if not o.lstrip("+").startswith(f"{ALLOW_KEY}=")]


class RunDirGuard(HydraCallback):
    """Hydra callback. Before a job writes anything: refuse a run folder that already
    holds a finished run, and a sweep folder that holds jobs of another sweep. After
    Hydra saved the job's config: rewrite it with credentials redacted.

    Timestamped folders never collide; this catches an explicit hydra.run.dir or
    hydra.sweep.dir. resume=RUN_DIR continues a run in its own folder on purpose, and
    so does the same sweep command run again in its folder (sweeps.py: completed jobs
    are skipped, the others continue). Hydra turns a callback's exceptions into
    warnings, so a refusal exits directly.
    """

    @staticmethod
    def _refuse(message: str) -> None:
        print(f"Error: {message}", file=sys.stderr)
        raise SystemExit(1)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("resume"):
            return
        run_dir = Path(config.hydra.run.dir)
        if finished_run(run_dir):
            self._refuse(
                f"{run_dir} holds a finished run (its metrics.json says completed); a new "
                f"run would overwrite it. Leave hydra.run.dir unset (each run gets its own "
                f"timestamped folder) or choose an empty folder."
            )

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        self._lock = SweepLock(sweep_dir)  # first: two processes must not both pass the checks
        if (held := self._lock.acquire()) is not None:
            self._refuse(
                f"{sweep_dir} is in use by another process (host {held.get('host')}, pid "
                f"{held.get('pid')}, started {held.get('started')}). Wait for it to end, or "
                f"stop it; a lock left by a process that died is taken over by itself."
            )
        try:
            self._check_same_sweep(config, sweep_dir)
        except SystemExit:
            self._lock.release()
            raise

    def __getstate__(self) -> dict[str, Any]:
        # submitit pickles the callbacks for its workers; the lock stays with this process.
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if getattr(self, "_lock", None) is not None:
            self._lock.release()

    def _check_same_sweep(self, config: DictConfig, sweep_dir: Path) -> None:
        finished = sorted(p.parent.name for p in sweep_dir.glob("*/metrics.json"))
        finished = [name for name in finished if finished_run(sweep_dir / name)]
        started = sorted(p.parents[1].name for p in sweep_dir.glob("*/.hydra/overrides.yaml"))
        if not finished and not started:
            return
        before = saved_overrides(sweep_dir / "multirun.yaml")
        now = override_list(OmegaConf.select(config, "hydra.overrides.task"))
        if before is not None and without_allow(before) == without_allow(now):
            self._check_same_config(config, sweep_dir)
            log.info(
                "Continuing the sweep in %s: jobs completed before are skipped (%s), the "
                "others continue from their newest checkpoint or start.",
                sweep_dir,
                ", ".join(finished) or "none",
            )
            return
        ran = f"its sweep ran with: {' '.join(before)}" if before else "no multirun.yaml"
        self._refuse(
            f"{sweep_dir} holds jobs of another sweep ({ran}); this one would overwrite "
            f"or mix with them. To finish that sweep, run its own command again with "
            f"hydra.sweep.dir={sweep_dir}; otherwise leave hydra.sweep.dir unset or choose "
            f"an empty folder."
        )

    def _check_same_config(self, config: DictConfig, sweep_dir: Path) -> None:
        """Each job folder's fingerprint against its config composed now and today's code:
        a sweep continued after an edit would put two configs in one arm."""
        code = code_version()
        changed: dict[str, list[str]] = {}
        for overrides_file in sorted(sweep_dir.glob("**/.hydra/overrides.yaml")):
            job_dir = overrides_file.parents[1]
            before = read_fingerprint(job_dir)
            if before is None:
                continue  # started before fingerprints were kept: nothing to compare
            job_overrides = saved_overrides(overrides_file) or []
            composed = compose(config.hydra.job.config_name, overrides=job_overrides)
            diff = differences(before, {"config": config_fingerprint(composed), "code": code})
            if diff:
                changed[job_dir.relative_to(sweep_dir).as_posix()] = diff
        if not changed:
            return
        listing = "\n".join(f"  job {job}: {'; '.join(d)}" for job, d in changed.items())
        if config.get(ALLOW_KEY):
            log.warning(
                "Continuing %s under a changed config or code (%s=true); the summary says so:\n%s",
                sweep_dir,
                ALLOW_KEY,
                listing,
            )
            record_allowed_change(sweep_dir, changed)
            return
        self._refuse(
            f"{sweep_dir} holds jobs run under another config or code than this command "
            f"composes now; continuing would mix both in one arm:\n{listing}\nUndo the "
            f"change to finish the sweep as it was, start the changed one in a new folder "
            f"(leave hydra.sweep.dir unset), or pass {ALLOW_KEY}=true to continue anyway "
            f"(the summary then says so)."
        )

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        job_dir = Path(config.hydra.runtime.output_dir)
        if OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN:
            # A sweep run again: its job numbers must still name the same jobs (a glob
            # over a config group that gained an option would shift them).
            before = saved_overrides(job_dir / ".hydra" / "overrides.yaml")
            now = redact_secrets(without_allow(override_list(config.hydra.overrides.task)))
            if before is not None and redact_secrets(without_allow(before)) != now:
                self._refuse(
                    f"{job_dir} holds a run of other overrides ({' '.join(before)}) than "
                    f"this job ({' '.join(now)}): the sweep's jobs no longer match its "
                    f"folders. Start it in a new folder (leave hydra.sweep.dir unset)."
                )
        subdir = config.hydra.get("output_subdir")
        if not subdir:
            return
        # The config saved now, and the run's own where this job continues a run (see
        # sweeps.hydra_subdir): both may name credentials.
        for saved in dict.fromkeys([job_dir / subdir, job_dir / ".hydra"]):
            self._redact(saved)

    @staticmethod
    def _redact(saved: Path) -> None:
        for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
            path = saved / name
            if not path.is_file():
                continue
            original = yaml.safe_load(path.read_text())
            cleaned = redact_secrets(original)
            if cleaned != original:
                with atomic_write(path) as f:  # a failed write keeps the saved config whole
                    f.write(yaml.safe_dump(cleaned, sort_keys=False))
                log.info("Credentials redacted from %s (shown as %s)", path, REDACTED)
