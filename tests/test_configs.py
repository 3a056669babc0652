"""Every config group and preset composes, and instantiates what it names."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from conftest import CONF, compose_config

GROUPS = ["model", "data", "optimizer", "scheduler", "trainer", "logger", "callbacks", "debug"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "override", [f"{g}={o}" for g in GROUPS for o in options(g)] + ["experiment=imagenet_paper"]
)
def test_every_option_composes(override: str, tmp_path: Path):
    cfg = compose_config([override], tmp_path)
    group, option = override.split("=")
    assert cfg.hydra.runtime.choices[group] == option


@pytest.mark.parametrize("preset", options("trainer"))
def test_trainer_presets_set_the_essentials(preset: str, tmp_path: Path):
    cfg = compose_config([f"trainer={preset}"], tmp_path)
    for key in ("max_epochs", "accelerator", "devices"):
        assert cfg.trainer[key] is not None, f"trainer={preset} lacks {key}"


def test_default_run_is_the_quick_cpu_job(tmp_path: Path):
    cfg = compose_config([], tmp_path)
    assert cfg.model.arch == "alexnet_small"
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.data.crop_size == cfg.model.input_size == 32
    assert cfg.experiment_name == "quick"


def test_imagenet_preset_is_the_papers_recipe(tmp_path: Path):
    cfg = compose_config(["experiment=imagenet_paper", "data.root=/x"], tmp_path)
    assert cfg.model.arch == "alexnet" and cfg.model.groups == 2 and cfg.model.lrn
    assert cfg.data.global_batch_size == 128 and cfg.data.crop_size == 224
    opt = cfg.optimizer
    assert (opt.lr, opt.momentum, opt.weight_decay) == (0.01, 0.9, 5e-4)
    assert cfg.scheduler._target_.endswith("ReduceLROnPlateau") and cfg.scheduler.factor == 0.1
    assert cfg.trainer.max_epochs == 90


def test_study_small_steps_the_lr_where_its_comment_says(tmp_path: Path):
    cfg = compose_config(["experiment=study_small"], tmp_path)
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(params, lr=cfg.optimizer.lr)
    scheduler = hydra.utils.instantiate(cfg.scheduler, optimizer=optimizer)
    lrs = []
    for _ in range(cfg.trainer.max_epochs):  # Lightning steps it once per epoch
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert cfg.trainer.max_epochs == 36 and len(set(lrs)) == 3
    assert lrs[23] == pytest.approx(0.01) and lrs[24] == pytest.approx(0.001)
    assert lrs[29] == pytest.approx(0.001) and lrs[30] == pytest.approx(0.0001)


def test_multistep_without_milestones_is_a_clear_error(tmp_path: Path):
    cfg = compose_config(["scheduler=multistep"], tmp_path)
    with pytest.raises(Exception, match="milestones"):
        hydra.utils.instantiate(cfg.scheduler, optimizer=torch.optim.SGD([torch.zeros(1)], lr=1))


@pytest.mark.parametrize(
    "order",
    [["experiment=imagenet_paper", "debug=fast_dev_run"], ["debug=limit", "experiment=quick"]],
)
def test_experiment_and_debug_compose_in_any_order(order, tmp_path: Path):
    cfg = compose_config([*order, "data.root=/x"], tmp_path)
    debug = cfg.hydra.runtime.choices["debug"]
    assert debug in ("fast_dev_run", "limit")
    assert cfg.trainer.get("fast_dev_run") or cfg.trainer.get("limit_train_batches")


@pytest.mark.parametrize("option", options("model"))
def test_models_instantiate_from_config(option: str, tmp_path: Path):
    cfg = compose_config([f"model={option}"], tmp_path)
    kwargs = {k: v for k, v in cfg.model.items() if k != "compile"}
    net = hydra.utils.instantiate(kwargs, num_classes=10)
    assert net.input_size == cfg.model.input_size
