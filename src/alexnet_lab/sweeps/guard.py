"""The Hydra callback that checks a sweep folder before any job starts: locked, same overrides,
same fingerprint."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra import compose
from hydra.experimental.callback import Callback as HydraCallback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from alexnet_lab.files import atomic_write
from alexnet_lab.jobs.folder import finished_run, override_list, saved_overrides
from alexnet_lab.redaction import REDACTED, redact_secrets
from alexnet_lab.sweeps.fingerprint import (
    ALLOW_KEY,
    code_version,
    config_fingerprint,
    differences,
    read_fingerprint,
    record_allowed_change,
)
from alexnet_lab.sweeps.lock import SweepLock

log = logging.getLogger(__name__)


def without_allow(overrides: list[str]) -> list[str]:
    """Overrides as compared between runs of a sweep: allow_config_change= is not one."""
    return [o for o in overrides if not o.lstrip("+").startswith(f"{ALLOW_KEY}=")]


class RunDirGuard(HydraCallback):
    """Hydra callback. Before a job writes anything: refuse a run folder that already
    holds a finished run, and a sweep folder that holds jobs of another sweep. After
    Hydra saved the job's config: rewrite it with credentials redacted.

    Timestamped folders never collide; this catches an explicit hydra.run.dir or
    hydra.sweep.dir. resume=RUN_DIR continues a run in its own folder on purpose, and
    so does the same sweep command run again in its folder (sweeps/summary.py: completed jobs
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
