"""summary.csv and summary.md in every sweep folder: one row per job, its overrides,
status and final metrics, failed jobs included with the reason.

A Hydra callback (conf/hydra/default.yaml) rebuilds both files from the jobs' own
metrics.json after every job and at the end of the sweep, so a sweep cut short still
leaves a table, and launchers that run jobs elsewhere (submitit) are covered too.

A sweep cut short (Ctrl-C, a kill, a failed job) is finished by running the same command
again with its folder, `hydra.sweep.dir=DIR` (`continue_command` prints it): jobs that
completed are skipped and their folders left exactly as they are (`finished_job`, and no
Hydra files written there: `hydra_subdir`), the others continue from their newest intact
checkpoint in their own folder and W&B run, and jobs never started run.
sweeps.guard.RunDirGuard checks that the folder holds this same sweep.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from alexnet_lab.files import atomic_write
from alexnet_lab.jobs.commands import continue_command
from alexnet_lab.sweeps.aggregate import aggregate_section
from alexnet_lab.sweeps.fingerprint import changes_section
from alexnet_lab.sweeps.report import log_summary_run

log = logging.getLogger(__name__)

FIRST_COLUMNS = ["job", "status", "overrides"]
LAST_COLUMNS = ["wall_s", "error", "output_dir"]
# Metric columns in this order when present; other numeric keys follow, sorted.
PREFERRED = ["val/acc_top1", "val/acc_top5", "val/loss", "train/loss", "train/acc_top1"]


def _job_sort_key(job: str) -> tuple[int, str]:
    return (int(job), "") if job.isdigit() else (1 << 30, job)


def collect_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder (a folder with Hydra's .hydra/overrides.yaml), at any depth:
    `hydra.sweep.subdir` may nest them (arm/seed_0); the job is named by its relative path."""
    jobs = {
        overrides.parent.parent.relative_to(sweep_dir).as_posix(): overrides.parent.parent
        for overrides in sweep_dir.glob("**/.hydra/overrides.yaml")
    }
    rows = []
    for job, job_dir in sorted(jobs.items(), key=lambda item: _job_sort_key(item[0])):
        overrides = OmegaConf.to_container(OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))
        row: dict[str, Any] = {"job": job, "overrides": " ".join(overrides)}
        metrics_path = job_dir / "metrics.json"
        if metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text())
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    row[key] = value
            row["status"] = metrics.get("status", "unknown")
            if metrics.get("error"):
                row["error"] = " ".join(str(metrics["error"]).split())[:300]
            elif metrics.get("signal"):  # interrupted, terminated, preempted
                row["error"] = f"{metrics['signal']} at step {metrics.get('global_step', '?')}"
        else:
            row["status"] = "no metrics.json (running, or killed)"
        row["output_dir"] = str(job_dir)
        rows.append(row)
    return rows


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    keys = {k for row in rows for k in row} - set(FIRST_COLUMNS) - set(LAST_COLUMNS)
    metrics = [k for k in PREFERRED if k in keys]
    metrics += sorted(keys - set(metrics))
    return FIRST_COLUMNS + metrics + [k for k in LAST_COLUMNS if any(k in r for r in rows)]


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def write_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    """Write sweep_dir/summary.csv and summary.md; return the rows."""
    rows = collect_jobs(sweep_dir)
    columns = _columns(rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(sweep_dir / "summary.csv") as f:
        f.write(out.getvalue())

    shown = [c for c in columns if c != "output_dir"]
    failed = sum(r["status"] != "completed" for r in rows)
    lines = [
        f"# Sweep {sweep_dir.name}",
        "",
        f"{len(rows)} jobs, {len(rows) - failed} completed, {failed} not completed.",
        "",
        "| " + " | ".join(shown) + " |",
        "|" + "---|" * len(shown),
    ]
    for row in rows:
        cells = (_format(row.get(c)).replace("|", "\\|") for c in shown)
        lines.append("| " + " | ".join(cells) + " |")
    lines += changes_section(sweep_dir)  # continued under a changed config, on purpose
    lines += aggregate_section(sweep_dir, rows)  # arms over seeds; also aggregate.csv
    with atomic_write(sweep_dir / "summary.md") as f:
        f.write("\n".join(lines) + "\n")
    return rows


class SweepSummary(Callback):
    """Hydra callback: keeps summary.csv / summary.md of the sweep folder up to date."""

    def _update(self, sweep_dir: Any) -> None:
        sweep_dir = Path(str(sweep_dir))
        if not sweep_dir.is_dir():
            return
        try:
            rows = write_summary(sweep_dir)
        except Exception:  # a summary must never fail a job or the sweep
            log.exception("Could not write the sweep summary in %s", sweep_dir)
            return
        return rows

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            self._update(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        rows = self._update(config.hydra.sweep.dir) or []
        log_summary_run(Path(str(config.hydra.sweep.dir)), rows)  # the aggregate, in W&B
        failed = [r["job"] for r in rows if r["status"] != "completed"]
        log.info("Sweep summary: %s/summary.md (%d jobs)", config.hydra.sweep.dir, len(rows))
        if failed:
            # Every job ran; the exit status still tells scripts and CI that some failed.
            # (Hydra turns a callback's exceptions into warnings: exit directly.)
            log.error(
                "Jobs not completed: %s (reasons in summary.md). To run them again, with the "
                "completed ones skipped:\n  %s",
                ", ".join(failed),
                continue_command(Path(str(config.hydra.sweep.dir))),
            )
            raise SystemExit(1)
