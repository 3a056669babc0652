"""A sweep in W&B, ready to read: the seed aggregate on a summary run of the sweep's group,
and a report built with wandb-workspaces (`python src/dashboard.py sweep_dir=DIR`).

The report: the sweep's training runs grouped by arm (W&B config `arm`, set by
alexnet_lab.tracking.wandb_run), `val/acc_top1` and `train/loss_epoch` against `epoch` per arm with
a band of ±1 SD over seeds, a bar chart of each arm's best validation accuracy, a
parallel-coordinates panel over the swept keys, the aggregate table of the summary run,
and the sweep's summary.md. Offline it writes the spec it would have sent beside the sweep.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from alexnet_lab.errors import ConfigError
from alexnet_lab.jobs.naming import IDENTITY_FILE, new_run_id
from alexnet_lab.sweeps.aggregate import aggregate, table
from alexnet_lab.tracking.loggers import wandb_credentials_available

log = logging.getLogger(__name__)

SUMMARY_TABLE = "sweep/aggregate"  # the summary run's W&B table
# The summary run's files: hidden, so that every folder in sight of a sweep is a job.
SUMMARY_RUN_DIR = ".summary_run"
SPEC_NAME = "dashboard.json"
# An override key whose W&B config key differs (the ablation presets set ablation_name).
CONFIG_KEY = {"ablation": "ablation_name", "experiment": "experiment_name"}
# What the report plots per arm.
CURVES = ("val/acc_top1", "train/loss_epoch")
BEST = "best/val/acc_top1"


@dataclass
class SweepRuns:
    """What a sweep's W&B runs share, read from its job folders."""

    sweep_dir: Path
    group: str
    project: str
    entity: str | None
    offline: bool
    job_dirs: list[Path]


def sweep_runs(sweep_dir: Path) -> SweepRuns | None:
    """None when no job of the sweep started a W&B run."""
    job_dirs = sorted(
        p.parent
        for p in sweep_dir.glob(f"*/{IDENTITY_FILE}")
        if (p.parent / ".hydra" / "overrides.yaml").is_file()  # a job, not .summary_run/
    )
    if not job_dirs:
        return None
    identity = json.loads((job_dirs[0] / IDENTITY_FILE).read_text())
    saved = OmegaConf.load(job_dirs[0] / ".hydra" / "config.yaml")

    def logged(key: str) -> Any:
        return OmegaConf.select(saved, f"logger.wandb.{key}", throw_on_resolution_failure=False)

    return SweepRuns(
        sweep_dir=sweep_dir,
        group=identity["group"],
        project=str(logged("project") or "alexnet-lab"),
        entity=logged("entity"),
        offline=any(any(job.glob("wandb/offline-run-*")) for job in job_dirs),
        job_dirs=job_dirs,
    )


# ------------------------------------------------------------ the summary run


def log_summary_run(sweep_dir: Path, rows: list[dict[str, Any]]) -> None:
    """At the end of a sweep whose jobs logged to W&B: the seed aggregate as the table
    `sweep/aggregate` of a run in the sweep's group (job_type summary), offline when the
    jobs were. Never fails the sweep."""
    try:
        runs = sweep_runs(sweep_dir)
        if runs is not None:
            _log_summary_run(runs, rows)
    except Exception:
        log.exception("Could not log the sweep's summary run to W&B")


def _log_summary_run(runs: SweepRuns, rows: list[dict[str, Any]]) -> None:
    import wandb

    agg = aggregate(rows)
    columns, data = table(agg)
    # W&B tables are JSON: no NaN.
    data = [[None if v != v else v for v in row] for row in data]
    # One summary run per sweep: a sweep finished later (run again in its folder) updates it.
    run_dir = runs.sweep_dir / SUMMARY_RUN_DIR
    run_dir.mkdir(exist_ok=True)
    identity = run_dir / IDENTITY_FILE
    if not identity.is_file():
        identity.write_text(json.dumps({"id": new_run_id()}) + "\n")
    run = wandb.init(
        id=json.loads(identity.read_text())["id"],
        resume="allow",
        project=runs.project,
        entity=runs.entity,
        group=runs.group,
        job_type="summary",
        name=f"summary {runs.sweep_dir.name}",
        dir=str(run_dir),
        mode="offline" if runs.offline else "online",
        config={
            "sweep_dir": str(runs.sweep_dir),
            "reference_arm": agg.reference.arm.name if agg.reference else None,
            "metrics": agg.metrics,
        },
    )
    run.log({SUMMARY_TABLE: wandb.Table(columns=columns, data=data)})
    files = Path(run.dir).parent
    run.finish()
    if runs.offline:
        log.info("W&B ran offline. Upload the sweep's summary run with:  wandb sync %s", files)


# ------------------------------------------------------------ the report


@dataclass
class SweepView:
    runs: SweepRuns
    swept: dict[str, str]  # varying override key -> its W&B config key
    summary_md: str


def swept_keys(job_dirs: list[Path]) -> dict[str, str]:
    """Override keys whose value differs between jobs, with the W&B config key that holds
    each; keys the config does not hold as one value (a config group) are left out: the
    runs' `arm` names them."""
    values: dict[str, set[str]] = {}
    for job in job_dirs:
        for override in OmegaConf.load(job / ".hydra" / "overrides.yaml"):
            key, _, value = str(override).lstrip("+~").partition("=")
            values.setdefault(key, set()).add(value)
    saved = OmegaConf.load(job_dirs[0] / ".hydra" / "config.yaml")
    swept = {}
    for key in sorted(k for k, v in values.items() if len(v) > 1 or len(job_dirs) == 1):
        config_key = CONFIG_KEY.get(key, key)
        node = OmegaConf.select(saved, config_key, throw_on_resolution_failure=False)
        if node is not None and not OmegaConf.is_config(node):
            swept[key] = config_key
    return swept


def describe_sweep(sweep_dir: Path) -> SweepView:
    runs = sweep_runs(sweep_dir)
    if runs is None:
        raise ConfigError(
            f"No job in {sweep_dir} logged to W&B (no */{IDENTITY_FILE}): a report needs "
            f"the sweep's W&B runs. Run the sweep with logger=wandb (the default)."
        )
    if "'" in runs.group or '"' in runs.group:
        raise ConfigError(
            f"The sweep's W&B group {runs.group!r} has a quote, which W&B filters cannot "
            f"hold. Rename the experiment (experiment_name=...) for the next sweep."
        )
    summary = sweep_dir / "summary.md"
    return SweepView(
        runs=runs,
        swept=swept_keys(runs.job_dirs),
        summary_md=summary.read_text() if summary.is_file() else "(no summary.md yet)",
    )


def build_report(view: SweepView, entity: str, online: bool = False) -> Any:
    """The wandb-workspaces Report for a sweep. Offline its run sets name no project: the
    library would look the project up over the network (saved, they get the report's)."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    runs = view.runs
    in_group = expr.Metric("Group") == runs.group
    where = {"entity": entity, "project": runs.project} if online else {}

    def runset(name: str, job_type: str, groupby: list[str]) -> Any:
        filters = [in_group, expr.Metric("JobType") == job_type]
        return wr.Runset(name=name, filters=filters, groupby=groupby, **where)

    # Per arm: the mean over seeds with a band of ±1 SD (the study's figures' convention).
    band = {"groupby": wr.Config("arm"), "groupby_aggfunc": "mean", "groupby_rangefunc": "stddev"}
    curves = [
        wr.LinePlot(title=f"{key} per arm (mean ± SD over seeds)", x="epoch", y=[key], **band)
        for key in CURVES
    ]
    columns = [wr.ParallelCoordinatesPlotColumn(wr.Config(k)) for k in view.swept.values()]
    columns += [
        wr.ParallelCoordinatesPlotColumn(wr.SummaryMetric(k)) for k in (BEST, "final/val/acc_top1")
    ]
    panels = [
        *curves,
        wr.BarPlot(
            title=f"{BEST} per arm (mean ± SD over seeds)",
            metrics=[wr.SummaryMetric(BEST)],
            orientation="v",
            **band,
        ),
        wr.ParallelCoordinatesPlot(columns=columns, title="swept keys -> validation top-1"),
    ]
    full_width = wr.Layout(w=24, h=10)
    return wr.Report(
        project=runs.project,
        entity=entity,
        title=f"Sweep {runs.group}",
        description=f"{len(runs.job_dirs)} W&B runs from {runs.sweep_dir}",
        width="fluid",
        blocks=[
            wr.H2("Arms over seeds"),
            wr.PanelGrid(runsets=[runset("jobs", "train", ["config.arm"])], panels=panels),
            wr.H2("Seed aggregate (the summary run)"),
            wr.PanelGrid(
                runsets=[runset("summary", "summary", [])],
                panels=[wr.WeavePanelSummaryTable(table_name=SUMMARY_TABLE, layout=full_width)],
            ),
            wr.H2("summary.md"),
            wr.MarkdownBlock(text=view.summary_md),
        ],
    )


def report_spec(report: Any) -> dict[str, Any]:
    """What report.save() sends, as JSON."""
    return report._to_model().model_dump(mode="json", by_alias=True, exclude_none=True)


def find_sweep(cfg: DictConfig) -> Path:
    """sweep_dir=DIR, or group=EXPERIMENT/SWEEP looked up under paths.log_dir."""
    if cfg.get("sweep_dir"):
        sweep_dir = Path(cfg.sweep_dir).expanduser()
        if not sweep_dir.is_dir():
            raise ConfigError(
                f"sweep_dir={sweep_dir} does not exist. Pass a sweep folder, e.g. "
                f"outputs/train/multiruns/<date_time>."
            )
        return sweep_dir
    if not cfg.get("group"):
        raise ConfigError(
            "Pass sweep_dir=DIR (a sweep folder, e.g. outputs/train/multiruns/<date_time>) "
            "or group=EXPERIMENT/SWEEP (a W&B group of this lab's sweeps)."
        )
    log_dir = Path(cfg.paths.log_dir)
    found = [
        d
        for d in sorted(log_dir.glob(f"*/multiruns/{Path(cfg.group).name}"))
        if (r := sweep_runs(d)) is not None and r.group == cfg.group
    ]
    if len(found) != 1:
        where = "no sweep folder" if not found else f"{len(found)} sweep folders"
        raise ConfigError(
            f"group={cfg.group}: {where} under {log_dir}/*/multiruns/ with W&B runs of that "
            f"group. Pass sweep_dir=DIR instead."
        )
    return found[0]


def offline_reason() -> str | None:
    """Why the report cannot be sent (None: try)."""
    if os.environ.get("WANDB_MODE") in ("offline", "dryrun", "disabled"):
        return f"WANDB_MODE={os.environ['WANDB_MODE']}"
    if not wandb_credentials_available():
        return "no W&B credentials (wandb login)"
    return None


def publish(cfg: DictConfig) -> dict[str, Any]:
    """Save the report of a sweep when W&B can be reached; either way write its spec to
    DIR/dashboard.json (offline: the spec it would have sent, run sets unresolved)."""
    sweep_dir = find_sweep(cfg)
    view = describe_sweep(sweep_dir)
    spec_path = sweep_dir / SPEC_NAME
    entity = cfg.get("entity") or view.runs.entity or os.environ.get("WANDB_ENTITY") or ""
    result: dict[str, Any] = {"spec": str(spec_path), "group": view.runs.group}
    why = offline_reason()
    if why is None:
        try:
            if not entity:
                import wandb

                entity = wandb.Api().default_entity or ""
            report = build_report(view, entity, online=True)
            spec_path.write_text(json.dumps(report_spec(report), indent=2) + "\n")
            report.save()
            result["url"] = report.url
            log.info("W&B report for %s: %s", view.runs.group, result["url"])
            return result
        except Exception as err:  # no network, a refused key, an unknown project
            why = f"W&B not reached: {type(err).__name__}: {err}"
    spec = report_spec(build_report(view, entity))
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")
    result["offline"] = why
    log.info("Offline (%s): no report created; its spec is in %s", why, spec_path)
    return result
