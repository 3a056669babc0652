"""The first-steps diagnostics (callbacks=diagnostics) and the stall guard (on by default)."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers.project import compose_config, folder_overrides, make_image_folder
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from alexnet_lab.errors import ConfigError
from alexnet_lab.models import AlexNet
from alexnet_lab.runs import build_callbacks, run_task
from alexnet_lab.tasks import train
from alexnet_lab.training.diagnostics import (
    TINY_UPDATE_RATIO,
    StallGuard,
    TrainingDiagnostics,
    TrainingStalledError,
    head_sharpness,
    stall_advice,
    weighted_layers,
)

# --- the numbers --------------------------------------------------------------------


def test_layers_are_named_as_the_paper_numbers_them():
    names = list(weighted_layers(AlexNet("alexnet", num_classes=10)))
    assert names == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]


def test_head_sharpness_is_the_top_eigenvalue_of_the_last_layers_hessian():
    torch.manual_seed(0)
    h, targets = torch.randn(6, 5) + 1.0, torch.tensor([0, 1, 2, 3, 0, 1])
    weight = torch.randn(4, 5) * 0.3

    def loss(w: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(h @ w.T, targets)

    hessian = torch.autograd.functional.hessian(loss, weight).reshape(20, 20)
    expected = torch.linalg.eigvalsh(hessian).max().item()
    assert head_sharpness(h, h @ weight.T, iterations=200) == pytest.approx(expected, rel=1e-3)


def test_bias_one_makes_the_paper_init_overshoot_with_few_classes():
    # Why the paper's init stalls on 10 classes: its bias-1 fc6/fc7 give every example the
    # same large fc7 output, so the last layer's curvature times lr 0.01 is far above the
    # 2 (1 + 0.9) = 3.8 at which SGD with momentum overshoots; Caffe's init is far below.
    images = torch.randn(16, 3, 224, 224)
    sharpness = {}
    for init in ("paper", "caffe"):
        torch.manual_seed(0)
        net = AlexNet("alexnet", num_classes=10, init=init)
        features = net.classifier[:-1](torch.flatten(net.avgpool(net.features(images)), 1))
        sharpness[init] = 0.01 * head_sharpness(features, net.classifier[-1](features))
    assert sharpness["paper"] > 3.8 > 1.0 > sharpness["caffe"]


# --- the diagnostics callback ---------------------------------------------------------


class Toy(L.LightningModule):
    """A two-layer ReLU net on 8 features, 3 classes: fast, and it can learn."""

    def __init__(self, lr: float = 0.05):
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        nn.init.normal_(self.net[2].weight, 0.0, 1e-4)  # the loss starts at ln 3
        nn.init.zeros_(self.net[2].bias)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def toy_loader(n: int = 256, batch_size: int = 8) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = x[:, :3].argmax(1)  # learnable from the inputs
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def fit(module, callbacks, steps: int, tmp_path: Path, logger=False) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, toy_loader())
    return trainer


def test_diagnostics_log_every_layer_on_the_chosen_steps_only(tmp_path: Path):
    diagnostics = TrainingDiagnostics(first_steps=3, every_n_steps=5)
    logger = CSVLogger(tmp_path, name="csv", version="")
    fit(Toy(), [diagnostics], steps=12, tmp_path=tmp_path, logger=logger)
    with (tmp_path / "csv" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("diag/update_ratio/fc1")]
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 5, 10]
    for row in rows:
        for key in ("act_rms", "grad_norm", "update_ratio"):
            assert float(row[f"diag/{key}/fc1"]) > 0 and float(row[f"diag/{key}/fc2"]) > 0
        assert 0.0 <= float(row["diag/dead_frac/fc1"]) <= 1.0
        assert "diag/dead_frac/fc2" not in row  # the last layer has no ReLU
        assert float(row["diag/head_sharpness_limit"]) == pytest.approx(3.8)
    assert all(float(row["diag/update_ratio/fc1"]) < 1 for row in rows)


def test_dead_relus_are_counted_per_unit(tmp_path: Path):
    module = Toy()
    with torch.no_grad():
        module.net[0].bias[:4] = -1e6  # 4 of the 16 hidden units can never fire
    diagnostics = TrainingDiagnostics(first_steps=1, every_n_steps=1000)
    fit(module, [diagnostics], steps=1, tmp_path=tmp_path)
    assert diagnostics.last_metrics["diag/dead_frac/fc1"] == pytest.approx(4 / 16)


def test_diagnostics_is_an_addable_callback_group(tmp_path: Path):
    cfg = compose_config(["callbacks=diagnostics"], tmp_path)
    kinds = {type(c).__name__ for c in build_callbacks(cfg)}
    assert {"TrainingDiagnostics", "StallGuard", "StopOnNonFiniteLoss"} <= kinds
    default = compose_config([], tmp_path)
    assert "diagnostics" not in default.callbacks and "stall_guard" in default.callbacks


@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_diagnostics_refuses_bad_step_counts(value):
    with pytest.raises(ConfigError, match="first_steps"):
        TrainingDiagnostics(first_steps=value)


# --- the stall guard ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "expected"), [(math.inf, 300), (10, None), (192, 48), (1_000_000, 300), (40, 20)]
)
def test_the_judged_step_scales_with_the_run(total, expected):
    assert StallGuard().judged_step(total) == expected


def test_a_run_that_cannot_learn_is_named_with_the_numbers(tmp_path: Path, caplog):
    guard = StallGuard(after_steps=20, window=5)
    with caplog.at_level(logging.WARNING, logger="alexnet_lab.training.diagnostics"):
        fit(Toy(lr=1e-12), [guard], steps=30, tmp_path=tmp_path)
    assert guard.verdict["step"] == 20
    assert guard.verdict["loss"] == pytest.approx(math.log(3), abs=1e-4)
    (message,) = [r.getMessage() for r in caplog.records if "stalled" in r.getMessage()]
    assert "after 20 optimizer steps" in message and "ln 3 = 1.099" in message
    # lr=1e-12: the weights do not move, so the advice is a higher learning rate.
    assert guard.verdict["update_ratio"] < 1e-9
    assert "barely move" in message and "a higher optimizer.lr (now 1e-12)" in message
    assert "lower" not in message
    assert "callbacks.stall_guard.stop=true" in message


@pytest.mark.parametrize(
    ("update_ratio", "says", "never"),
    [
        (1e-12, "try a higher optimizer.lr (now 1e-12)", "lower"),
        (3e-6, "try a higher optimizer.lr (now 1e-12)", "lower"),
        (2e-2, "a lower optimizer.lr (now 1e-12)", "higher"),
        (None, "a lower optimizer.lr (now 1e-12)", "higher"),  # not measured
    ],
)
def test_stall_advice_fits_how_far_the_weights_moved(update_ratio, says, never):
    advice = stall_advice(update_ratio, 1e-12, "kaiming")
    assert says in advice and never not in advice
    if update_ratio is None or update_ratio > TINY_UPDATE_RATIO:
        assert "another model.init (now kaiming)" in advice


def test_stop_ends_a_run_that_cannot_learn(tmp_path: Path):
    guard = StallGuard(after_steps=20, window=5, stop=True)
    with pytest.raises(TrainingStalledError, match="steps 15-19.*was stopped"):
        fit(Toy(lr=1e-12), [guard], steps=30, tmp_path=tmp_path)


def test_a_run_that_learns_passes_silently(tmp_path: Path, caplog):
    guard = StallGuard(after_steps=20, window=5, stop=True)
    with caplog.at_level(logging.WARNING, logger="alexnet_lab.training.diagnostics"):
        trainer = fit(Toy(lr=0.05), [guard], steps=30, tmp_path=tmp_path)
    assert trainer.global_step == 30
    assert guard.verdict["loss"] < 0.95 * math.log(3)
    assert not [r for r in caplog.records if "stalled" in r.getMessage()]


def test_runs_too_short_to_judge_are_left_alone(tmp_path: Path):
    guard = StallGuard(stop=True)  # min_steps 20
    fit(Toy(lr=1e-12), [guard], steps=10, tmp_path=tmp_path)
    assert guard.verdict is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"after_steps": 0}, "after_steps=0"),
        ({"window": -1}, "window=-1"),
        ({"run_fraction": 0}, "run_fraction=0"),
        ({"tolerance": 1.5}, "tolerance=1.5"),
    ],
)
def test_stall_guard_refuses_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        StallGuard(**kwargs)


def test_a_stopped_run_records_status_stalled(tmp_path: Path, monkeypatch):
    root = make_image_folder(tmp_path / "images", per_class=4)
    guard = [
        "optimizer.lr=1e-12",
        "callbacks.stall_guard.stop=true",
        "callbacks.stall_guard.min_steps=3",
        "callbacks.stall_guard.window=2",
        "data.batch_size=2",
        "trainer.max_epochs=2",
    ]
    cfg = compose_config(folder_overrides(root, *guard), tmp_path / "run")
    monkeypatch.setattr("alexnet_lab.runs.in_multirun", lambda: True)  # return, don't exit
    metrics = run_task(train, cfg)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == on_disk["status"] == "stalled"
    assert on_disk["error"].startswith("Training looks stalled: after 3 optimizer steps")
    assert "a higher optimizer.lr (now 1e-12)" in on_disk["error"]
