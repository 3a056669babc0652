"""src/tune.py: Optuna studies whose trials are training runs. Toy budgets: 18 tiny images
per split, 1-2 epochs per trial, CSV logs, no callbacks."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
import yaml
from helpers.project import (
    REPO,
    SRC,
    compose_config,
    make_image_folder,
    run_entry_point,
    start_entry_point,
)
from helpers.tuning import ONE_STEP, read_trials, toy
from helpers.wandb_offline import read_wandb_run
from omegaconf import OmegaConf

from alexnet_lab.errors import ConfigError, TrainingDivergedError
from alexnet_lab.tuning.report import require_figures
from alexnet_lab.tuning.space import hydra_value, search_space
from alexnet_lab.tuning.study import Study
from alexnet_lab.tuning.trial import Objective, TrialReporter

# Two trials at lr=0.01 that differ only in how often they log, so they learn alike and set
# the median; lr=0 is a bad value (FAIL); lr=1e-6 cannot learn in one epoch: below the median
# after its first epoch, so it is pruned there.
LR_TRIALS = [
    "~tune.space",
    "+tune.space={optimizer:{lr:{type:categorical,choices:[0.0,1.0e-6,0.01]}},"
    "trainer:{log_every_n_steps:{type:categorical,choices:[1,2,3]}}}",
    "tune.enqueue=["
    + ",".join(
        f"{{optimizer.lr:{lr},trainer.log_every_n_steps:{n}}}"
        for lr, n in [(0.01, 1), (0.01, 2), (0.0, 1), (1.0e-6, 1)]
    )
    + "]",
    "+tune.pruners.median.n_startup_trials=2",
]


def tune_metrics(cwd: Path) -> list[dict]:
    """The tune jobs' own metrics.json, oldest first."""
    paths = sorted((cwd / "outputs" / "tune").glob("**/metrics.json"), key=os.path.getmtime)
    return [json.loads(p.read_text()) for p in paths]


@pytest.fixture(scope="module")
def lr_study(tmp_path_factory) -> SimpleNamespace:
    cwd = tmp_path_factory.mktemp("tune")
    root = make_image_folder(cwd / "images")
    study_dir = cwd / "study"
    with_wandb = [a if a != "logger=csv" else "logger=wandb" for a in toy(root)]  # offline
    args = [*with_wandb, f"tune.dir={study_dir}", "tune.n_trials=4", *LR_TRIALS]
    result = run_entry_point("tune.py", *args, cwd=cwd)
    return SimpleNamespace(cwd=cwd, root=root, dir=study_dir, args=args, stdout=result.stdout)


def test_trials_complete_fail_and_prune_and_the_search_goes_on(lr_study):
    rows = {int(r["number"]): r for r in read_trials(lr_study.dir)}
    assert [rows[n]["state"] for n in range(4)] == ["COMPLETE"] * 2 + ["FAIL", "PRUNED"]
    assert "learning rate" in rows[2]["reason"]  # the bad value's own error
    assert rows[3]["reason"] == "pruned after 1 of 2 epochs" and rows[3]["epochs"] == "1"
    for n in range(2):
        assert float(rows[n]["value"]) > 0.5 and rows[n]["epochs"] == "2"

    pruned = json.loads((lr_study.dir / "trials" / "3" / "metrics.json").read_text())
    assert pruned["status"] == "pruned" and pruned["tune"]["state"] == "PRUNED"
    assert pruned["epochs"] == 1  # training stopped after the first epoch (counted from 0)
    failed = json.loads((lr_study.dir / "trials" / "2" / "metrics.json").read_text())
    assert failed["status"] == "failed" and failed["tune"]["state"] == "FAIL"
    for n in range(4):  # each trial is a train run: its config, overrides and log
        trial_dir = lr_study.dir / "trials" / str(n)
        assert rows[n]["run_dir"] == str(trial_dir)
        overrides = yaml.safe_load((trial_dir / ".hydra" / "overrides.yaml").read_text())
        assert f"optimizer.lr={float(rows[n]['optimizer.lr'])!r}" in overrides
        assert (trial_dir / "train.log").stat().st_size > 0

    # Each trial its own W&B run: named by number and params, grouped by the study (its
    # folder, relative to the project root), tagged with the arm; the pruned one marked.
    for n in (0, 3):
        run = read_wandb_run(lr_study.dir / "trials" / str(n))
        assert run["name"].startswith(f"trial {n}: optimizer.lr=")
        assert (run["group"], run["job_type"]) == ("study", "tune")
        assert "activation:relu" in run["tags"]
        assert ("pruned" in run["tags"]) == (n == 3)
        assert run["summary"].get("tune/state") == ("PRUNED" if n == 3 else None)

    for name in ("optimization_history.png", "param_importances.png"):
        assert (lr_study.dir / name).read_bytes()[:4] == b"\x89PNG"
    summary = tune_metrics(lr_study.cwd)[0]
    assert summary["status"] == "completed"
    assert (summary["tune/complete"], summary["tune/pruned"], summary["tune/fail"]) == (2, 1, 1)
    assert summary["tune/pruned_epochs_saved"] == 1
    assert "Train with it:\n  python src/train.py " in lr_study.stdout


def test_best_yaml_runs_with_train_py(lr_study):
    best = yaml.safe_load((lr_study.dir / "best.yaml").read_text())
    summary = tune_metrics(lr_study.cwd)[0]
    trial_dir = Path(summary["best_run_dir"])
    assert best == yaml.safe_load((trial_dir / ".hydra" / "overrides.yaml").read_text())
    cfg = compose_config(best, lr_study.cwd / "compose")
    assert cfg.optimizer.lr == summary["best_params"]["optimizer.lr"] == 0.01
    # The command best.yaml's header gives, as a shell runs it (--cfg job: print, no run).
    command = f"{shlex.quote(sys.executable)} {SRC / 'train.py'} --cfg job " + (
        f"$(sed -n 's/^- //p' {shlex.quote(str(lr_study.dir / 'best.yaml'))})"
    )
    assert "python src/train.py $(sed -n 's/^- //p'" in (lr_study.dir / "best.yaml").read_text()
    shown = subprocess.run(
        ["bash", "-c", command], cwd=lr_study.cwd, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    job = yaml.safe_load(shown.stdout)
    assert job["optimizer"]["lr"] == 0.01 and job["data"]["root"] == str(lr_study.root)


def test_rerun_adds_trials_to_the_same_study(lr_study):
    before = {int(r["number"]) for r in read_trials(lr_study.dir)}
    args = [a for a in lr_study.args if not a.startswith("tune.n_trials=")]
    result = run_entry_point(
        "tune.py", *args, *ONE_STEP, "tune.n_trials=1", "tune.figures=false", cwd=lr_study.cwd
    )
    after = {int(r["number"]) for r in read_trials(lr_study.dir)}
    assert after == before | {max(before) + 1}  # one new trial; the enqueued ones not again
    assert f"({len(before)} there before)" in result.stdout + result.stderr
    assert (lr_study.dir / "trials" / str(max(before) + 1) / "metrics.json").is_file()


def test_two_workers_at_once_share_one_study(tmp_path: Path):
    root = make_image_folder(tmp_path / "images")
    study_dir = tmp_path / "study"
    args = [*toy(root, *ONE_STEP, epochs=1), f"tune.dir={study_dir}", "tune.n_trials=2"]
    args.append("tune.figures=false")
    workers = [
        start_entry_point(
            "tune.py",
            *args,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    logs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(log[-2000:] for log in logs)
    rows = read_trials(study_dir)
    assert sorted(int(r["number"]) for r in rows) == [0, 1, 2, 3]
    assert {r["state"] for r in rows} == {"COMPLETE"}
    assert len({r["run_dir"] for r in rows}) == 4
    ran = [{int(n) for n in re.findall(r"Trial (\d+) finished with value", log)} for log in logs]
    assert [len(r) for r in ran] == [2, 2] and not ran[0] & ran[1]


def test_multirun_tunes_each_arm_as_its_own_study_with_its_workers(tmp_path: Path):
    root = make_image_folder(tmp_path / "images")
    run_entry_point(
        "tune.py",
        "-m",
        "ablation=baseline,tanh",
        "tune.worker=0,1",  # two workers per arm (one after the other with this launcher)
        *toy(root, *ONE_STEP, epochs=1),
        f"tune.dir={tmp_path / 'arms'}",
        "tune.n_trials=1",
        "tune.figures=false",
        cwd=tmp_path,
    )
    assert sorted(p.name for p in (tmp_path / "arms").iterdir()) == [
        "ablation=baseline",
        "ablation=tanh",
    ]  # DIR/<the job's values of the swept keys>, tune.* left out
    for arm, activation in (("baseline", "relu"), ("tanh", "tanh")):
        rows = read_trials(tmp_path / "arms" / f"ablation={arm}")
        assert [(r["number"], r["state"]) for r in rows] == [("0", "COMPLETE"), ("1", "COMPLETE")]
        config = OmegaConf.load(Path(rows[0]["run_dir"]) / ".hydra" / "config.yaml")
        assert config.model.activation == activation


# ------------------------------------------------------------------ in-process, no training


@pytest.mark.parametrize(
    "space, message",
    [
        ({"optimizer": {"lr": {"type": "uniform", "low": 0, "high": 1}}}, "type='uniform'"),
        ({"lr": {"type": "float", "low": 0.1, "high": 1, "choices": [1]}}, "not take choices"),
        ({"lr": {"type": "float", "low": 1, "high": 0.1}}, "tune.space.lr=.*low"),
        ({"lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "tune.space.lr=.*log"),
        ({"optimizer": {"lr": 0.1}}, "is not a parameter"),
        ({}, "tune.space is empty"),
    ],
)
def test_bad_search_space_is_refused_by_name(space, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        search_space(OmegaConf.create(space))


def test_search_space_nested_or_dotted_and_override_values():
    space = search_space(
        OmegaConf.create(
            {
                "optimizer": {"lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}},
                "model.activation": {"type": "categorical", "choices": ["relu", "tanh"]},
            }
        )
    )
    assert list(space) == ["optimizer.lr", "model.activation"]
    assert [hydra_value(v) for v in (True, None, 0.01, 3, "tanh", "a b")] == [
        "true",
        "null",
        "0.01",
        "3",
        "tanh",
        "'a b'",
    ]


def fake_trainer(**metrics) -> SimpleNamespace:
    return SimpleNamespace(
        current_epoch=0,
        callback_metrics={k: torch.tensor(v) for k, v in metrics.items()},
        should_stop=False,
        loggers=[],
    )


def new_trial() -> optuna.Trial:
    return optuna.create_study(direction="maximize").ask()


def test_reporter_fails_a_nan_metric_and_names_a_missing_one():
    tune = OmegaConf.create({"metric": "val/acc_top1", "direction": "maximize", "reach": None})
    reporter = TrialReporter(new_trial(), Objective(tune), max_epochs=3)
    with pytest.raises(TrainingDivergedError, match="val/acc_top1 became nan at epoch 0"):
        reporter.on_train_epoch_end(fake_trainer(**{"val/acc_top1": math.nan}), None)

    trainer = fake_trainer(**{"train/acc_top1": 0.5})
    reporter.on_train_epoch_end(trainer, None)
    assert trainer.should_stop and "it logs train/acc_top1" in reporter.missing


def test_reporter_prunes_before_the_last_epoch_only():
    tune = OmegaConf.create({"metric": "val/acc_top1", "direction": "maximize", "reach": None})
    always = optuna.pruners.ThresholdPruner(lower=1.0)  # prunes every value below 1
    for epoch, pruned in ((0, True), (1, False)):
        trial = optuna.create_study(direction="maximize", pruner=always).ask()
        reporter = TrialReporter(trial, Objective(tune), max_epochs=2)
        trainer = fake_trainer(**{"val/acc_top1": 0.5})
        trainer.current_epoch = epoch
        reporter.on_train_epoch_end(trainer, None)
        assert (reporter.pruned_at is not None, trainer.should_stop) == (pruned, pruned)


def test_reach_objective_counts_epochs_to_the_target():
    tune = OmegaConf.create({"metric": "train/acc_top1", "direction": "maximize", "reach": 0.75})
    objective = Objective(tune)
    assert objective.study_direction == "minimize"
    reporter = TrialReporter(new_trial(), objective, max_epochs=5)
    for epoch, acc in enumerate((0.5, 0.8)):
        trainer = fake_trainer(**{"train/acc_top1": acc})
        trainer.current_epoch = epoch
        reporter.on_train_epoch_end(trainer, None)
    assert trainer.should_stop and reporter.value() == 2.0  # reached in the second epoch
    assert reporter.trial.study.trials[-1].intermediate_values == {
        0: pytest.approx(0.25),
        1: 0.0,
    }
    never = TrialReporter(new_trial(), objective, max_epochs=5)
    never.on_train_epoch_end(fake_trainer(**{"train/acc_top1": 0.1}), None)
    assert never.value() == 6.0  # not reached within the budget: max_epochs + 1


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer.lr=0.05", "optimizer.lr=0.05 set a value that tune.space tunes"),
        ("trainer.devices=2", "one device"),
        ("+tune.space.optimizer.lrr={type:float,low:0.1,high:1}", "does not have"),
        ("tune.enqueue=[{model.dropout:0.1}]", "tune.enqueue names model.dropout"),
        ("tune.lost.grace_s=0", "tune.lost.grace_s=0"),
        ("tune.lost.retries=-1", "tune.lost.retries=-1"),
    ],
)
def test_settings_that_cannot_apply_are_refused(tmp_path: Path, override: str, message: str):
    cfg = compose_config([f"tune.dir={tmp_path}", override], tmp_path, config_name="tune")
    with pytest.raises(ConfigError, match=message):
        Study(cfg)


def test_figures_without_matplotlib_say_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ConfigError, match="tune.figures=false"):
        require_figures()


def test_tune_config_composes_everything_train_has():
    train = compose_config([], REPO / "unused")
    tune = compose_config(["tune.dir=x"], REPO / "unused", config_name="tune")
    assert set(train) - {"hydra"} <= set(tune) and tune.task_name == "tune"
    assert OmegaConf.to_container(tune.model) == OmegaConf.to_container(train.model)
