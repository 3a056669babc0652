"""The progress bar shows the training loss without reading it from the device every
step: it refreshes every `refresh_rate` steps (callbacks.progress_bar.refresh_rate) and
reads the last logged step loss then; `+trainer.enable_progress_bar=false` turns it off."""

from __future__ import annotations

from pathlib import Path

import hydra
from helpers.project import compose_config
from helpers.small_training import small_classifier, train_only
from lightning.pytorch.callbacks import ProgressBar

from alexnet_lab.runs import build_callbacks
from alexnet_lab.training.callbacks import LossProgressBar


class RecordedPostfix(LossProgressBar):
    """The bar's figures at each refresh, as the user sees them."""

    def __init__(self, refresh_rate: int):
        super().__init__(refresh_rate=refresh_rate)
        self.shown: list[tuple[int, dict]] = []

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        self.shown.append((trainer.global_step, dict(metrics)))
        return metrics


def test_the_bar_shows_the_step_loss_at_each_refresh_only():
    bar = RecordedPostfix(refresh_rate=5)
    train_only(
        small_classifier(),
        images=40,
        batch_size=2,
        max_steps=10,
        log_every_n_steps=5,  # the step loss is logged (and shown) on logging steps
        enable_progress_bar=True,
        callbacks=[bar],
    )
    batch_refreshes = [(step, shown) for step, shown in bar.shown if step in (5, 10)]
    assert [step for step, _ in batch_refreshes][:2] == [5, 10]
    for _, shown in batch_refreshes:
        assert isinstance(shown["loss"], float) and shown["loss"] > 0, shown
    assert len(bar.shown) <= 4  # steps 5 and 10 and the epoch's end, not every step


def test_the_default_callbacks_hold_the_loss_bar_at_a_refresh_rate_above_one(tmp_path: Path):
    cfg = compose_config(["logger=none", f"paths.output_dir={tmp_path}"], tmp_path)
    (bar,) = [c for c in build_callbacks(cfg) if isinstance(c, ProgressBar)]
    assert isinstance(bar, LossProgressBar) and bar.refresh_rate > 1


def test_enable_progress_bar_false_leaves_the_bar_out(tmp_path: Path):
    cfg = compose_config(
        ["logger=none", "+trainer.enable_progress_bar=false", f"paths.output_dir={tmp_path}"],
        tmp_path,
    )
    callbacks = build_callbacks(cfg)
    assert not any(isinstance(c, ProgressBar) for c in callbacks)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=callbacks)
    assert trainer.progress_bar_callback is None
