"""Data settings that cannot mean what they say are refused, never silently changed:
a checkpoint resumed or fine-tuned on inputs prepared otherwise than it was trained on
(input scale, mean, std, class list), a mean outside the pixel range, and PCA noise asked
for with augmentation off (which the data module does not draw)."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import pytest
from helpers.project import CONF, compose_config, run_entry_point
from omegaconf import OmegaConf, open_dict

from alexnet_lab.checks import check_checkpoint_fits, check_inputs_fit, check_train_config
from alexnet_lab.errors import CheckpointError, ConfigError
from alexnet_lab.jobs.folder import plain
from alexnet_lab.training.module import AlexNetClassifier

CLASSES = ["cat", "dog", "emu"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


# --- config checks --------------------------------------------------------------------


PRESETS = [
    *[["experiment=study_small", f"ablation={a}"] for a in options("ablation")],
    *[["experiment=study_fig1", f"ablation={a}"] for a in ("baseline", "tanh", "no_lrn")],
    *[[f"experiment={e}"] for e in options("experiment")],
    *[[f"debug={d}"] for d in options("debug")],
    *[[f"data={d}"] for d in options("data")],
]


@pytest.mark.parametrize("overrides", PRESETS, ids=" ".join)
def test_every_preset_passes_the_train_config_check(overrides: list[str], tmp_path: Path):
    # trainer=cpu: the GPU presets' device count is checked against this machine.
    cfg = compose_config([*overrides, "trainer=cpu"], tmp_path)
    if OmegaConf.is_missing(cfg.data, "root"):
        cfg = compose_config([*overrides, "trainer=cpu", "data.root=/x"], tmp_path)
    check_train_config(cfg)


def test_augment_false_with_pca_noise_is_refused_not_dropped(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"data.augment=false with data.pca_std=0.1: .*pca_std=0"):
        check_train_config(compose_config(["data.augment=false"], tmp_path))
    check_train_config(compose_config(["data.augment=false", "data.pca_std=0"], tmp_path))
    # The ablation says both, so its arm draws exactly what it says: no PCA noise.
    cfg = compose_config(["experiment=study_small", "ablation=no_augment"], tmp_path)
    check_train_config(cfg)
    assert cfg.data.pca_std == 0
    assert hydra.utils.instantiate(cfg.data).normalizer.pca_std == 0
    # A resumed run keeps the config it saved before this check, and trains on as it did.
    cfg = compose_config(["data.augment=false"], tmp_path)
    with open_dict(cfg):
        cfg.resume = str(tmp_path)
    check_train_config(cfg)


@pytest.mark.parametrize("scale", ["unit", "paper"])
def test_a_mean_outside_the_pixel_range_is_refused(scale: str, tmp_path: Path):
    overrides = [f"data.input_scale={scale}", "data.mean=[123.68,116.78,103.94]"]
    with pytest.raises(ConfigError, match=r"data.mean=\[123.68, .*Divide 0-255 means by 255"):
        check_train_config(compose_config(overrides, tmp_path))
    with pytest.raises(ConfigError, match="data.mean=\\[-0.1"):
        check_train_config(
            compose_config([f"data.input_scale={scale}", "data.mean=[-0.1,0,0]"], tmp_path)
        )
    check_train_config(
        compose_config([f"data.input_scale={scale}", "data.mean=[0,0.5,1]"], tmp_path)
    )


# --- checkpoints ----------------------------------------------------------------------


def classifier(tmp_path: Path, *overrides: str, classes=CLASSES) -> AlexNetClassifier:
    cfg = compose_config(["data=folder", "data.root=/x", *overrides], tmp_path)  # ImageNet's
    return AlexNetClassifier(
        net=plain(cfg.model),
        optimizer=plain(cfg.optimizer),
        class_names=classes,
        data=plain(cfg.data),
    )


def checkpoint_of(model: AlexNetClassifier) -> dict:
    return {"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("data.input_scale=paper", "data.input_scale: the checkpoint's unit, this run's paper"),
        (
            "data.mean=[0.5,0.5,0.5]",
            "data.mean: the checkpoint's [0.485, 0.456, 0.406], this run's [0.5, 0.5, 0.5]",
        ),
        (
            "data.std=[0.5,0.5,0.5]",
            "data.std: the checkpoint's [0.229, 0.224, 0.225], this run's [0.5, 0.5, 0.5]",
        ),
    ],
)
def test_a_checkpoint_for_other_inputs_is_refused_naming_both(override, named, tmp_path: Path):
    trained = checkpoint_of(classifier(tmp_path))
    ours = classifier(tmp_path, override)
    with pytest.raises(CheckpointError) as refused:
        check_checkpoint_fits(trained, "x.ckpt", ours)  # fine-tuning: ckpt_path=
    assert named in str(refused.value) and "ckpt_path=x.ckpt" in str(refused.value)
    with pytest.raises(CheckpointError, match=named.replace("[", r"\[")):
        ours.on_load_checkpoint(trained)  # what fit() restores: resume=, a requeued job
    check_checkpoint_fits(trained, "x.ckpt", classifier(tmp_path))  # the same inputs: fine


def test_a_checkpoint_of_other_classes_is_refused_on_resume_too(tmp_path: Path):
    trained = checkpoint_of(classifier(tmp_path))
    ours = classifier(tmp_path, classes=["cat", "dog", "yak"])
    with pytest.raises(CheckpointError, match=r"classes: the checkpoint's 3 \(cat, dog, emu\), "):
        ours.on_load_checkpoint(trained)


def test_keys_an_older_checkpoint_lacks_are_not_compared():
    check_inputs_fit(
        {"data": {"mean": [0.5] * 3}}, {"data": {"mean": [0.5] * 3, "input_scale": "unit"}}, "x"
    )
    check_inputs_fit({}, {"data": {"input_scale": "paper"}, "class_names": CLASSES}, "x")


@pytest.mark.slow
def test_resume_or_fine_tune_with_another_input_scale_is_refused(tmp_path: Path):
    run = ["data=synthetic", "data.train_size=32", "data.val_size=16", "data.batch_size=16"]
    run_entry_point("train.py", *run, "trainer.max_epochs=1", "logger=csv", cwd=tmp_path)
    (run_dir,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    completed = json.loads((run_dir / "metrics.json").read_text())
    further = ["data.input_scale=paper", "trainer.max_epochs=2"]  # a limit left to train to
    resumed = run_entry_point("train.py", f"resume={run_dir}", *further, cwd=tmp_path, check=False)
    said = resumed.stdout + resumed.stderr
    assert resumed.returncode == 1, said[-3000:]
    assert "data.input_scale: the checkpoint's unit, this run's paper" in said
    # The refused attempt is recorded beside the run's result, not over it.
    assert json.loads((run_dir / "metrics.json").read_text()) == completed
    assert json.loads((run_dir / "last_attempt.json").read_text())["status"] == "failed"
    # At its limit the run is complete: the switch cannot apply, and says so.
    at_limit = run_entry_point(
        "train.py", f"resume={run_dir}", "data.input_scale=paper", cwd=tmp_path, check=False
    )
    said = at_limit.stdout + at_limit.stderr
    assert at_limit.returncode == 1, said[-3000:]
    assert "With nothing to train, data.input_scale=paper cannot apply" in said
    tuned = run_entry_point(
        "train.py",
        *run,
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        "data.std=[0.5,0.5,0.5]",
        "logger=csv",
        cwd=tmp_path,
        check=False,
    )
    said = tuned.stdout + tuned.stderr
    assert tuned.returncode == 1, said[-3000:]
    assert "data.std: the checkpoint's [0.229, 0.224, 0.225], this run's [0.5, 0.5, 0.5]" in said
