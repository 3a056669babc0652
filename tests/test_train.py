"""Training and evaluation end to end: it learns, it is reproducible, it sweeps,
its checkpoints evaluate, and bad input gets a clear message."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import hydra
import pytest
import torch
from helpers.project import compose_config, folder_overrides, make_image_folder, run_entry_point

from alexnet_lab.models import AlexNet, count_parameters
from alexnet_lab.runs import run_task
from alexnet_lab.tasks import train
from alexnet_lab.training.restore import load_checkpoint, model_from_checkpoint


@pytest.fixture(scope="module")
def learnable_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("folder"), per_class=16, size=(36, 44))


def train_overrides(root: Path, *extra: str) -> list[str]:
    return folder_overrides(root, "optimizer.lr=0.02", *extra, batch_size=16, epochs=3)


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_short_run_learns_and_writes_metrics(learnable_folder: Path, tmp_path: Path):
    cfg = compose_config(train_overrides(learnable_folder), tmp_path)
    result = run_task(train, cfg)
    metrics = read_metrics(tmp_path)
    assert metrics == json.loads(json.dumps(result, default=str))
    assert metrics["status"] == "completed" and metrics["epochs"] == 3
    assert metrics["val/acc_top1"] > 0.6  # 3 classes: chance is 1/3
    assert metrics["params"] == count_parameters(AlexNet("alexnet_small", num_classes=3))
    for key in ("val/acc_top5", "val/loss", "train/loss", "wall_s", "overrides"):
        assert key in metrics, key
    with open(tmp_path / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert any(r.get("lr-SGD") for r in rows), "learning rate is logged"


def test_checkpoints_have_plain_names_and_load_with_weights_only(
    learnable_folder: Path, tmp_path: Path
):
    cfg = compose_config(train_overrides(learnable_folder, "trainer.max_epochs=1"), tmp_path)
    metrics = run_task(train, cfg)
    for key in ("best_checkpoint", "last_checkpoint"):
        path = Path(metrics[key])
        assert path.parent == tmp_path / "checkpoints" and "=" not in path.name
        checkpoint = torch.load(path, weights_only=True)
        hparams = checkpoint["hyper_parameters"]
        assert hparams["class_names"] == ["n01440764", "n01443537", "n01484850"]
        assert hparams["net"]["arch"] == "alexnet_small" and hparams["data"]["crop_size"] == 32


def test_last_checkpoint_is_the_final_step_even_when_validation_did_not_improve(
    learnable_folder: Path, tmp_path: Path
):
    # lr 1e-30: validation never improves after epoch 0, so the best checkpoint stays there;
    # last.ckpt must still hold the final step (Lightning 2.6 writes its save_last file
    # only on steps where a top-k checkpoint is saved).
    overrides = train_overrides(learnable_folder, "trainer.max_epochs=3", "optimizer.lr=1e-30")
    metrics = run_task(train, compose_config(overrides, tmp_path))
    best = torch.load(metrics["best_checkpoint"], weights_only=True)
    last = torch.load(metrics["last_checkpoint"], weights_only=True)
    assert Path(metrics["last_checkpoint"]).name == "last.ckpt"
    assert best["global_step"] < last["global_step"] == metrics["global_step"]
    assert last["epoch"] == 2


def test_same_seed_gives_identical_metrics(learnable_folder: Path, tmp_path: Path):
    runs = []
    for name in ("first", "second"):
        overrides = folder_overrides(
            learnable_folder, "trainer.max_epochs=2", "data.num_workers=1", "seed=7"
        )
        cfg = compose_config(overrides, tmp_path / name)
        runs.append(run_task(train, cfg))
    keys = ("val/acc_top1", "val/acc_top5", "val/loss", "train/loss")
    assert [runs[0][k] for k in keys] == [runs[1][k] for k in keys]


def test_multirun_sweeps_one_job_per_value(learnable_folder: Path, tmp_path: Path):
    run_entry_point(
        "train.py",
        "-m",
        "model.activation=tanh,relu",
        *train_overrides(learnable_folder, "trainer.max_epochs=1", "callbacks=none"),
        cwd=tmp_path,
    )
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").exists())
    assert [p.name for p in jobs] == ["0", "1"]
    activations = {read_metrics(j)["overrides"][0] for j in jobs}
    assert activations == {"model.activation=tanh", "model.activation=relu"}
    assert all(read_metrics(j)["status"] == "completed" for j in jobs)


def test_eval_scores_a_runs_checkpoint_with_centre_and_ten_crops(
    learnable_folder: Path, tmp_path: Path
):
    cfg = compose_config(train_overrides(learnable_folder, "trainer.max_epochs=2"), tmp_path)
    trained = run_task(train, cfg)
    run_entry_point("eval.py", f"ckpt_path={trained['last_checkpoint']}", cwd=tmp_path)
    (eval_dir,) = (tmp_path / "outputs" / "eval" / "runs").iterdir()
    scores = read_metrics(eval_dir)
    for key in ("eval/acc_top1", "eval/acc_top5", "eval/acc_top1_10crop", "eval/acc_top5_10crop"):
        assert 0.0 <= scores[key] <= 1.0, key
    # The checkpoint's last validation used the same centre crops: same top-1.
    assert scores["eval/acc_top1"] == pytest.approx(trained["val/acc_top1"])
    # Ten-crop, scored here by hand: the softmax of each of the ten views, averaged; the
    # loss is the NLL of that average, top-1 its argmax.
    checkpoint = load_checkpoint(trained["last_checkpoint"])
    model = model_from_checkpoint(checkpoint)
    datamodule = hydra.utils.instantiate(checkpoint["hyper_parameters"]["data"], ten_crop=True)
    datamodule.setup("test")
    probs, targets = [], []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            views, labels = datamodule.on_after_batch_transfer(batch, 0)
            assert views.shape[1] == 10, "ten views per image"
            logits = model(views.flatten(0, 1)).view(len(labels), 10, -1)
            probs.append(logits.softmax(-1).mean(1))
            targets.append(labels)
    probs, targets = torch.cat(probs), torch.cat(targets)
    loss = torch.nn.functional.nll_loss(probs.log(), targets).item()
    top1 = (probs.argmax(1) == targets).float().mean().item()
    assert scores["eval/loss_10crop"] == pytest.approx(loss, rel=1e-4)
    assert scores["eval/acc_top1_10crop"] == pytest.approx(top1)
    assert scores["eval/loss_10crop"] != pytest.approx(scores["eval/loss"], rel=1e-4)


def test_default_job_runs_offline_without_credentials_or_prompt(
    shared_data_dir, tmp_path, monkeypatch
):
    """`python src/train.py` as a stranger runs it: no W&B key, no WANDB_MODE, no stdin."""
    for name in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    result = run_entry_point(
        "train.py",
        "debug=limit",
        f"paths.data_dir={shared_data_dir}",
        cwd=tmp_path,
        wandb_mode=None,  # not the tests' offline default: a stranger has none set
    )
    (run_dir,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    assert read_metrics(run_dir)["status"] == "completed"
    assert list((run_dir / "wandb").glob("offline-run-*")), "W&B logged offline"
    assert "wandb sync" in result.stdout + result.stderr


@pytest.mark.slow
def test_default_run_reaches_far_above_chance(shared_data_dir, tmp_path):
    """The README's main job, unchanged: ~1.5 min on 2 cores."""
    run_entry_point(
        "train.py", f"paths.data_dir={shared_data_dir}", "logger=csv", cwd=tmp_path, timeout=600
    )
    (run_dir,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    assert read_metrics(run_dir)["val/acc_top1"] > 0.6  # 10 classes: chance is 0.1


# --- bad input --------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=folder", "data.root=/no/such/dir"], "does not exist"),
        (["data=folder"], "data.root must be set"),
        (["model.activation=swish9"], "Choose one of: relu, tanh"),
        (["model.dropout=1.5"], r"use a probability in \[0, 1\)"),
        (["model.arch=resnet"], "Unknown model arch"),
    ],
)
def test_bad_input_is_one_clear_paragraph(overrides, message, shared_data_dir, tmp_path):
    result = run_entry_point(
        "train.py",
        *overrides,
        "logger=none",
        f"paths.data_dir={shared_data_dir}",
        cwd=tmp_path,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "Traceback" not in output
    assert re.search(message, output), output[-2000:]
    (run_dir,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "failed" and re.search(message, metrics["error"])
