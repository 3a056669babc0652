"""The recipe check (make recipe-check): the paper's recipe must train."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers.project import SRC, compose_config

from alexnet_lab.bench.recipe_check import (
    CHANCE_FRACTION,
    PRESETS,
    Outcome,
    Recipe,
    format_table,
    grid,
    judge,
    run_dir_name,
    run_overrides,
    run_recipe_check,
)
from alexnet_lab.models import AlexNet
from alexnet_lab.training.diagnostics import weighted_layers

LINE = CHANCE_FRACTION * math.log(10)


@pytest.mark.parametrize("arch", ["alexnet", "alexnet_owt"])
def test_caffe_init_is_bvlc_alexnets(arch):
    # models/bvlc_alexnet/train_val.prototxt: gaussian weights std 0.01, fc6/fc7 0.005;
    # constant biases 0.1 on conv2, conv4, conv5, fc6, fc7 (the paper's 1s), else 0.
    torch.manual_seed(0)
    layers = weighted_layers(AlexNet(arch, num_classes=1000, init="caffe"))
    for name, layer in layers.items():
        expected = 0.005 if name in ("fc6", "fc7") else 0.01
        assert layer.weight.std().item() == pytest.approx(expected, rel=0.05), name
        assert abs(layer.weight.mean().item()) < expected / 10, name
        bias = 0.1 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(layer.bias == bias), name


RECIPE = Recipe("r", (), required=True)


def outcome(losses, status="completed", error=None) -> Outcome:
    return Outcome(RECIPE, status, "paper", "paper", 20, list(losses), 1.0, 2.0, error)


def test_a_run_leaves_chance_when_its_windowed_loss_falls_below_the_line():
    losses = [2.3] * 10 + [1.0] * 10
    verdict = judge(outcome(losses), window=4)
    # Windows ending at step 12 hold two 2.3s and two 1.0s: 1.65 < 1.84.
    assert verdict.left_at == 12 and verdict.passed and verdict.label == "left chance"
    assert verdict.final == pytest.approx(1.0) and verdict.peak == pytest.approx(2.3)


def test_a_flat_or_blown_up_run_is_stalled():
    verdict = judge(outcome([3.0, 25.0, 20.0] + [2.31] * 20), window=5)
    assert verdict.left_at is None and not verdict.passed and verdict.label == "stalled"
    assert verdict.peak == 25.0


def test_a_nan_loss_is_diverged():
    error = "The training loss became nan at step 2 (epoch 0, batch 2; all counted from 0)"
    verdict = judge(outcome([3.0, 80.0], status="failed", error=error), window=1)
    assert verdict.label == "diverged" and not verdict.passed


def test_the_grid_is_every_init_at_both_input_scales_but_the_presets_own_cell():
    cells = {(r.overrides[1], r.overrides[2]) for r in grid(skip=("caffe", "paper"))}
    assert len(cells) == 7
    assert ("model.init=caffe", "data.input_scale=paper") not in cells
    assert ("model.init=paper", "data.input_scale=unit") in cells


@pytest.mark.parametrize("scale", ["paper", "unit"])
def test_check_runs_compose_to_the_preset_on_the_check_data(scale, tmp_path: Path):
    preset = ("experiment=imagenet_paper", "model.init=caffe", f"data.input_scale={scale}")
    recipe = Recipe("x", preset, required=False)
    overrides = run_overrides(recipe, tmp_path / "data", tmp_path / "run", steps=7, batch_size=32)
    cfg = compose_config(overrides, tmp_path / "run")
    assert cfg.model.arch == "alexnet" and cfg.model.init == "caffe"
    assert cfg.optimizer.lr == 0.01 and cfg.optimizer.momentum == 0.9
    assert cfg.trainer.max_steps == 7 and cfg.trainer.accelerator == "cpu"
    assert cfg.data.root == str(tmp_path / "data") and cfg.data.global_batch_size == 32
    expected = 1 / 255 if scale == "paper" else 0.3539
    assert list(cfg.data.std) == pytest.approx([expected] * 3)
    assert list(cfg.callbacks) == ["stop_on_nonfinite_loss"]


def test_every_recipe_composes_with_a_run_folder_hydra_accepts(tmp_path: Path):
    for recipe in (*PRESETS, *grid()):
        run_dir = tmp_path / run_dir_name(recipe)
        overrides = run_overrides(recipe, tmp_path / "data", run_dir, steps=7, batch_size=32)
        cfg = compose_config(overrides, tmp_path / "run")
        assert cfg.hydra.run.dir == str(run_dir), recipe.name


def test_the_owt_recipe_keeps_pytorchs_init(tmp_path: Path):
    overrides = run_overrides(PRESETS[1], tmp_path, tmp_path / "run", steps=7, batch_size=32)
    cfg = compose_config(overrides, tmp_path / "run")
    model = (cfg.model.arch, cfg.model.init, cfg.data.input_scale)
    assert model == ("alexnet_owt", "default", "unit")


def test_the_paper_preset_starts_from_caffes_init_and_the_papers_is_one_key_away(tmp_path):
    preset = ["experiment=imagenet_paper", "data.root=/x"]
    assert compose_config(preset, tmp_path).model.init == "caffe"
    assert compose_config([*preset, "model.init=paper"], tmp_path).model.init == "paper"


def test_the_table_names_every_recipe_with_its_verdict():
    table = format_table([outcome([2.3] * 10 + [1.0] * 10)], window=4, batch_size=32)
    assert "| **r** | paper | paper | 20 | 12 | 1.00 | 2.30 | left chance | 1 | 2 |" in table
    blown_up = format_table([outcome([2.3, 3.1e17] + [2.3] * 18)], window=4, batch_size=32)
    assert "| 2.30 | 3.10e+17 | stalled |" in blown_up


@pytest.mark.slow
def test_the_paper_preset_and_the_default_run_leave_chance(
    tmp_path: Path, shared_data_dir, monkeypatch
):
    # The CI-sized check: two presets at a 60-step budget (about 2.5 minutes on 2 cores).
    monkeypatch.setenv("ALEXNET_LAB_ROOT", str(tmp_path))  # the default run's data/ goes here
    names = (PRESETS[0].name, PRESETS[2].name)
    outcomes, ok = run_recipe_check(
        SRC / "train.py", shared_data_dir, tmp_path / "out", steps=60, only=names, with_grid=False
    )
    verdicts = {o.recipe.name: judge(o, window=10) for o in outcomes}
    assert ok, (tmp_path / "out" / "recipe_check.md").read_text()
    assert set(verdicts) == set(names)
    assert all(v.final < LINE for v in verdicts.values())
    assert outcomes[0].init == "caffe" and outcomes[0].input_scale == "paper"
