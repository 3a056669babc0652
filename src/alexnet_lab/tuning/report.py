"""What a study leaves in its folder, rewritten (atomically) after every trial:

    trials.csv                  one row per trial: number, state, value, params, epochs, ...
    best.yaml                   the best trial's overrides, for `python src/train.py`
    optimization_history.png    the objective of every finished trial, and the best so far
    param_importances.png       how much each parameter explains the objective (PED-ANOVA)

Every worker of a study writes them from the whole study, so the last writer's files are
complete.
"""

from __future__ import annotations

import csv
import io
import logging
import shlex
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from alexnet_lab.errors import ConfigError
from alexnet_lab.files import atomic_write

log = logging.getLogger(__name__)

FIGURES = {"history": "optimization_history.png", "importances": "param_importances.png"}


def require_figures() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(
            "tune.figures=true draws the optimisation history and the parameter importances "
            "with matplotlib, which is not installed: pip install matplotlib (it comes with "
            "the dev extras, pip install -e '.[dev]'), or pass tune.figures=false."
        ) from None


def best_command(overrides: list[str]) -> str:
    return " ".join(["python src/train.py", *(shlex.quote(o) for o in overrides)])


def _reason(trial: FrozenTrial) -> str:
    if trial.state == TrialState.PRUNED and "pruned_at_epoch" in trial.user_attrs:
        ran = trial.user_attrs["pruned_at_epoch"] + 1
        return f"pruned after {ran} of {trial.user_attrs.get('max_epochs', '?')} epochs"
    if trial.user_attrs.get("fail_reason"):
        return trial.user_attrs["fail_reason"]
    # A retry carries its lost original's system attributes, that trial's reason among them.
    if trial.state == TrialState.FAIL and trial.system_attrs.get("fail_reason"):
        return trial.system_attrs["fail_reason"]
    retried = trial.system_attrs.get("failed_trial")  # what Optuna's retry callback sets
    return "" if retried is None else f"retry of lost trial {retried}"


def write_trials_csv(trials: list[FrozenTrial], path: Path, space: list[str]) -> None:
    names = space + sorted({k for t in trials for k in t.params} - set(space))
    columns = ["number", "state", "value", *names, "epochs", "duration_s", "reason", "run_dir"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    for trial in trials:
        duration = trial.duration.total_seconds() if trial.duration else None
        writer.writerow(
            {
                "number": trial.number,
                "state": trial.state.name,
                "value": trial.value,
                **trial.params,
                "epochs": len(trial.intermediate_values),
                "duration_s": None if duration is None else round(duration, 1),
                "reason": _reason(trial),
                "run_dir": trial.user_attrs.get("run_dir", ""),
            }
        )
    with atomic_write(path) as f:
        f.write(out.getvalue())


def write_best(study: optuna.Study, folder: Path) -> FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    best = study.best_trial
    path = folder / "best.yaml"
    header = (
        f"# The best of {len(complete)} complete trials of {study.study_name}: trial "
        f"{best.number}, {study.user_attrs.get('objective', 'value')} = {best.value:.6g}\n"
        f"# ({best.user_attrs.get('run_dir', '')}). Train with it:\n"
        f"#   python src/train.py $(sed -n 's/^- //p' {path})\n"
    )
    with atomic_write(path) as f:
        f.write(header + yaml.safe_dump(list(best.user_attrs.get("overrides", []))))
    return best


def _save(ax: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure = ax.figure
    figure.tight_layout()
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png", dpi=110)
    plt.close(figure)


def draw_figures(study: optuna.Study, folder: Path) -> None:
    from optuna.visualization import matplotlib as plots

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    target = study.user_attrs.get("objective", "value")
    with warnings.catch_warnings():  # the matplotlib plots are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # PED-ANOVA on a handful of trials says its importances are all equal: they are.
        warnings.filterwarnings("ignore", "Target and region quantiles", UserWarning)
        if complete:
            _save(
                plots.plot_optimization_history(study, target_name=target),
                folder / FIGURES["history"],
            )
        # Importances need parameters that varied over at least two complete trials.
        if len(complete) >= 2:
            try:
                ax = plots.plot_param_importances(study, target_name=target)
            except (RuntimeError, ValueError) as err:
                log.info("No parameter importances yet: %s", err)
            else:
                _save(ax, folder / FIGURES["importances"])


def write_outputs(study: optuna.Study, folder: Path, space: dict[str, Any], figures: bool) -> None:
    write_trials_csv(study.get_trials(deepcopy=False), folder / "trials.csv", list(space))
    write_best(study, folder)
    if figures:
        draw_figures(study, folder)


def summarize(study: optuna.Study, folder: Path, objective: str) -> dict[str, Any]:
    """The tune job's result (its metrics.json, the multirun summary's row)."""
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    summary: dict[str, Any] = {
        "study": study.study_name,
        "study_dir": str(folder),
        "objective": objective,
        "tune/trials": len(trials),
        **{f"tune/{s.lower()}": states[s] for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
    }
    # What pruning saved: the epochs pruned trials did not run, at their own pace.
    saved_epochs, saved_s = 0, 0.0
    for trial in trials:
        ran = len(trial.intermediate_values)
        if trial.state != TrialState.PRUNED or not ran or "max_epochs" not in trial.user_attrs:
            continue
        left = trial.user_attrs["max_epochs"] - ran
        saved_epochs += left
        if trial.duration:
            saved_s += trial.duration.total_seconds() / ran * left
    summary["tune/pruned_epochs_saved"] = saved_epochs
    summary["tune/pruned_s_saved"] = round(saved_s, 1)
    if states["COMPLETE"]:
        best = study.best_trial
        overrides = list(best.user_attrs.get("overrides", []))
        summary.update(
            {
                "tune/best_value": best.value,
                "tune/best_trial": best.number,
                "best_params": best.params,
                "best_run_dir": best.user_attrs.get("run_dir"),
                "best_command": best_command(overrides),
            }
        )
    return summary
