"""Bad input of every kind gets a clear outcome, nothing written is ever half a file,
checkpoints cannot run code, and no credential lands in a run's outputs."""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.project import compose_config, folder_overrides, make_image_folder, run_entry_point
from omegaconf import OmegaConf
from PIL import Image

from alexnet_lab.data import ImageFolderDataModule
from alexnet_lab.data.folders import union_across_ranks
from alexnet_lab.data.transforms import (
    EvalTransform,
    TrainTransform,
    UnreadableImageError,
    read_image_rgb,
)
from alexnet_lab.errors import CheckpointError, ConfigError, DataError
from alexnet_lab.files import write_json_atomic
from alexnet_lab.redaction import REDACTED, redact_secrets
from alexnet_lab.runs import run_task
from alexnet_lab.sweeps.guard import RunDirGuard
from alexnet_lab.tasks import train
from alexnet_lab.training.checkpoints import AtomicCheckpointIO
from alexnet_lab.training.restore import load_checkpoint

CLASSES = ("n01440764", "n01443537", "n01484850")


def add_bad_files(class_dir: Path) -> list[Path]:
    """A truncated JPEG, an empty file and random bytes, all with image extensions."""
    good = sorted(class_dir.iterdir())[0].read_bytes()
    bad = [class_dir / "truncated.JPEG", class_dir / "empty.jpg", class_dir / "garbage.png"]
    bad[0].write_bytes(good[: len(good) // 3])
    bad[1].write_bytes(b"")
    bad[2].write_bytes(os.urandom(2000))
    return bad


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """One short run whose checkpoint the checkpoint tests reuse."""
    root = make_image_folder(tmp_path_factory.mktemp("folder"), per_class=8)
    out = tmp_path_factory.mktemp("run")
    metrics = run_task(train, compose_config(folder_overrides(root), out))
    return {"root": root, "out": out, "ckpt": Path(metrics["last_checkpoint"])}


# --- unreadable, odd and stray files ---------------------------------------------


def test_unreadable_files_are_skipped_named_once_and_counted(tmp_path: Path, caplog):
    root = make_image_folder(tmp_path / "data", per_class=6)
    bad = add_bad_files(root / "train" / CLASSES[1]) + add_bad_files(root / "val" / CLASSES[2])
    caplog.set_level(logging.WARNING, logger="alexnet_lab.data.folders")
    cfg = compose_config(folder_overrides(root, "trainer.max_epochs=2"), tmp_path / "run")
    metrics = run_task(train, cfg)

    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    assert metrics["data/skipped_files"] == len(bad) == 6
    listed = Path(metrics["data/skipped_list"]).read_text().split()
    assert sorted(listed) == sorted(str(p) for p in bad)
    warned = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    for path in bad:  # two epochs, two val passes: still one warning per file
        assert sum(str(path) in message for message in warned) == 1, path
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["data/skipped_files"] == 6


def test_skipped_files_are_counted_across_dataloader_workers(tmp_path: Path):
    root = make_image_folder(tmp_path, per_class=6)
    bad = add_bad_files(root / "train" / CLASSES[0])
    dm = ImageFolderDataModule(
        root=str(root), crop_size=24, resize_size=28, batch_size=4, num_workers=2
    )
    dm.setup("fit")
    seen = sum(len(targets) for _, targets in dm.train_dataloader())
    assert seen == len(dm.train_set)  # each bad file replaced, batches keep their size
    assert dm.skipped_files() == sorted(str(p) for p in bad)


def _union_on_rank(rank: int, tmp: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=2
    )
    try:
        mine = {0: ["/d/a.jpg", "/d/shared.jpg"], 1: ["/d/b.jpg", "/d/shared.jpg"]}[rank]
        Path(tmp, f"rank{rank}.json").write_text(json.dumps(union_across_ranks(mine)))
    finally:
        torch.distributed.destroy_process_group()


def test_skipped_files_are_totalled_across_ddp_ranks(tmp_path: Path):
    # Two gloo ranks, each with its own unreadable files (one in common).
    torch.multiprocessing.start_processes(
        _union_on_rank, args=(str(tmp_path),), nprocs=2, join=True, start_method="fork"
    )
    expected = ["/d/a.jpg", "/d/b.jpg", "/d/shared.jpg"]
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected


def write_odd_images(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    images = {
        "grayscale.jpg": rgb.convert("L"),
        "cmyk.jpg": rgb.convert("CMYK"),
        "palette.png": rgb.convert("P"),
        "palette.gif": rgb.convert("P"),
        "rgba.png": rgb.convert("RGBA"),
        "grey_alpha.png": rgb.convert("LA"),
        "bitmap.bmp": rgb,
        "tiny.png": rgb.resize((3, 2)),
        "tall.jpg": rgb.resize((3, 400)),
        "wide.jpg": rgb.resize((400, 3)),
        "sixteen_bit.png": Image.fromarray(rng.integers(0, 65535, (20, 30), dtype=np.uint16)),
    }
    paths = {}
    for name, image in images.items():
        paths[name] = folder / name
        image.save(paths[name])
    return paths


def test_odd_images_become_rgb_crops(tmp_path: Path):
    paths = write_odd_images(tmp_path)
    train_tf, eval_tf = TrainTransform(36, 32), EvalTransform(36, 32, ten_crop=True)
    for name, path in paths.items():
        image = read_image_rgb(str(path))
        assert image.dtype == torch.uint8 and image.shape[0] == 3, name
        assert train_tf(image).shape == (3, 32, 32), name
        assert eval_tf(image).shape == (10, 3, 32, 32), name
    cmyk = read_image_rgb(str(paths["cmyk.jpg"])).permute(1, 2, 0).numpy()
    assert (
        np.abs(cmyk.astype(int) - np.asarray(Image.open(paths["cmyk.jpg"]).convert("RGB"))).max()
        <= 2
    )


def test_odd_images_train_without_being_skipped(tmp_path: Path):
    root = make_image_folder(tmp_path / "data", per_class=4)
    odd = write_odd_images(root / "train" / CLASSES[0])
    metrics = run_task(train, compose_config(folder_overrides(root), tmp_path / "run"))
    assert metrics["status"] == "completed" and metrics["data/skipped_files"] == 0
    dm = ImageFolderDataModule(root=str(root), crop_size=32)
    dm.setup("fit")
    assert set(odd.values()) <= {Path(p) for p, _ in dm.train_set.samples}


def test_unreadable_file_error_says_what_is_wrong(tmp_path: Path):
    (bad := tmp_path / "x.jpg").write_bytes(b"")
    with pytest.raises(UnreadableImageError, match="empty file"):
        read_image_rgb(str(bad))


def test_stray_files_and_hidden_folders_are_ignored(tmp_path: Path):
    root = make_image_folder(tmp_path, per_class=2)
    for split in ("train", "val"):
        class_dir = root / split / CLASSES[0]
        (class_dir / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (class_dir / "Thumbs.db").write_bytes(os.urandom(64))
        (class_dir / "README.txt").write_text("labels from the vendor")
        (class_dir / "._n01440764_0000.JPEG").write_bytes(b"AppleDouble")  # macOS metadata
        (root / split / ".ipynb_checkpoints").mkdir()
        (root / split / ".Trash-1000" / "files").mkdir(parents=True)
    dm = ImageFolderDataModule(root=str(root), crop_size=24)
    dm.setup("fit")
    assert dm.classes == list(CLASSES)
    names = {Path(p).name for p, _ in dm.train_set.samples + dm.val_set.samples}
    assert names == {f"{c}_{k:04d}.JPEG" for c in CLASSES for k in range(2)}


@pytest.mark.parametrize(("extra_in", "lacking"), [("val", "train/"), ("train", "val/")])
def test_class_folders_missing_from_a_split_are_named(tmp_path: Path, extra_in, lacking):
    root = make_image_folder(tmp_path, per_class=1)
    make_image_folder(root, classes=("n09999999",), per_class=1, splits=(extra_in,))
    cfg = compose_config(folder_overrides(root), tmp_path / "run")
    with pytest.raises(DataError, match=f"{extra_in} has class folders that {lacking} lacks: n09"):
        train(cfg)


# --- config values out of range -------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=-0.01", r"optimizer.lr=-0.01: use a positive learning rate"),
        ("optimizer.lr=0", r"optimizer.lr=0"),
        ("optimizer.lr=fast", r"optimizer.lr=fast"),
        ("optimizer.momentum=1.5", r"optimizer.momentum=1.5"),
        ("data.batch_size=0", r"data.batch_size=0: use a whole number >= 1"),
        ("data.num_workers=-2", r"data.num_workers=-2"),
        ("trainer.max_epochs=0", r"trainer.max_epochs=0"),
        ("trainer.devices=4096", r"trainer.devices=4096 asks for more than this machine's"),
        ("trainer.devices=[0,4096]", r"asks for more than this machine's"),
    ],
)
def test_out_of_range_values_fail_before_anything_is_built(override, message, tmp_path: Path):
    # data.root does not exist: the config error must come first, before any data is read.
    cfg = compose_config(folder_overrides(tmp_path / "no-such-dir", override), tmp_path / "run")
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_trainer_without_a_gpu_is_a_config_error(tmp_path: Path):
    cfg = compose_config(folder_overrides(tmp_path, "trainer=gpu"), tmp_path / "run")
    with pytest.raises(ConfigError, match="no CUDA GPUs.*trainer=cpu"):
        train(cfg)


def test_all_problems_are_named_at_once(tmp_path: Path):
    cfg = compose_config(
        folder_overrides(tmp_path, "optimizer.lr=-1", "data.batch_size=0"), tmp_path / "run"
    )
    with pytest.raises(ConfigError, match=r"optimizer.lr=-1.*data.batch_size=0"):
        train(cfg)


# --- checkpoints given as ckpt_path ------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is a text file\n", "not a checkpoint this project can read"),
        (b"", "not a checkpoint this project can read"),
        (os.urandom(4096), "not a checkpoint this project can read"),
    ],
    ids=["text", "empty", "random-bytes"],
)
def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(content, message, tmp_path: Path):
    (path := tmp_path / "model.ckpt").write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_bare_state_dict_and_foreign_pickles_are_named(tmp_path: Path):
    torch.save(torch.nn.Linear(2, 2).state_dict(), state_dict := tmp_path / "weights.pth")
    with pytest.raises(CheckpointError, match=r"bare network weights.*model=alexnet_owt"):
        load_checkpoint(state_dict)
    torch.save({"epoch": 3, "optimizer": {}}, other := tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an AlexNet Lab checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_checkpoint_of_another_model_is_refused_before_training(trained, tmp_path: Path):
    cfg = compose_config(
        folder_overrides(trained["root"], "model=cifar_fig1", f"ckpt_path={trained['ckpt']}"),
        tmp_path / "run",
    )
    with pytest.raises(CheckpointError, match=r"trained as model arch alexnet_small.*cifar_fig1"):
        train(cfg)


def test_checkpoint_with_another_class_count_is_refused(trained, tmp_path: Path):
    root = make_image_folder(tmp_path / "four", classes=(*CLASSES, "n09999999"), per_class=2)
    cfg = compose_config(folder_overrides(root, f"ckpt_path={trained['ckpt']}"), tmp_path / "run")
    with pytest.raises(CheckpointError, match=r"with 3 classes .* with 4 classes"):
        train(cfg)


def test_checkpoint_with_other_layer_shapes_is_refused(trained, tmp_path: Path):
    cfg = compose_config(
        folder_overrides(trained["root"], "model.groups=1", f"ckpt_path={trained['ckpt']}"),
        tmp_path / "run",
    )
    with pytest.raises(CheckpointError, match="other layer shapes"):
        train(cfg)


# --- NaN loss ------------------------------------------------------------------------


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    trained, tmp_path: Path, monkeypatch
):
    # Epoch 0 trains normally; then the learning rate jumps by 1e30 and the loss blows up.
    extra = ["trainer.max_epochs=4", "scheduler=step", "scheduler.step_size=1"]
    cfg = compose_config(
        folder_overrides(trained["root"], *extra, "scheduler.gamma=1e30"), tmp_path / "run"
    )
    # As in a sweep, the error is recorded and returned (a single run exits with status 1).
    monkeypatch.setattr("alexnet_lab.runs.in_multirun", lambda: True)
    metrics = run_task(train, cfg)
    assert metrics["status"] == "failed"
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    message = on_disk["error"]
    assert message.startswith("The training loss became") and "diverged" in message
    assert "at step" in message and "(epoch 1, batch" in message
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert f"last good checkpoint is kept: {last}" in message
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())


# --- nothing lost --------------------------------------------------------------------


def test_trainer_writes_checkpoints_through_the_atomic_plugin(tmp_path: Path):
    import hydra

    cfg = compose_config(folder_overrides(tmp_path), tmp_path / "run")
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_a_failing_checkpoint_save_leaves_the_previous_file(tmp_path: Path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary left


KILL_LOOP = """
import sys, torch
from alexnet_lab.training.checkpoints import AtomicCheckpointIO
io, epoch = AtomicCheckpointIO(), 0
while True:
    epoch += 1
    io.save_checkpoint({"epoch": epoch, "w": torch.full((8_000_000,), float(epoch))}, sys.argv[1])
    print(epoch, flush=True)
"""


def test_a_kill_during_a_checkpoint_save_leaves_a_whole_file(tmp_path: Path):
    path = tmp_path / "last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_LOOP, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        proc.stdout.readline()  # one 32 MB save done; the next is being written
        time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["w"].numel() == 8_000_000
    assert bool((checkpoint["w"] == checkpoint["epoch"]).all())


def test_a_failing_metrics_write_leaves_the_previous_file(tmp_path: Path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"status": "completed", "val/acc_top1": 0.5})

    def crash(data, f, **kwargs):
        f.write('{"status": "comp')
        raise KeyboardInterrupt

    monkeypatch.setattr(json, "dump", crash)
    with pytest.raises(KeyboardInterrupt):
        write_json_atomic(path, {"status": "failed"})
    monkeypatch.undo()
    assert json.loads(path.read_text())["val/acc_top1"] == 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_finished_runs_folder_is_never_reused(trained, tmp_path: Path):
    run_dir = trained["out"]
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    result = run_entry_point(
        "train.py", f"hydra.run.dir={run_dir}", "logger=none", cwd=tmp_path, check=False
    )
    assert result.returncode == 1
    assert "holds a finished run" in result.stderr and "Traceback" not in result.stderr
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == before


def test_run_dir_guard_refuses_finished_sweep_folders_only(tmp_path: Path):
    guard = RunDirGuard()
    write_json_atomic(tmp_path / "sweep" / "0" / "metrics.json", {"status": "failed"})
    guard.on_multirun_start(
        OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
    )
    write_json_atomic(tmp_path / "sweep" / "1" / "metrics.json", {"status": "completed"})
    with pytest.raises(SystemExit):
        guard.on_multirun_start(
            OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}})
        )


# --- security ------------------------------------------------------------------------


class RunsCode:
    """Unpickling this runs `open(marker, "w")`: what a hostile checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_cannot_run_code(tmp_path: Path):
    marker = tmp_path / "pwned"
    with open(raw := tmp_path / "raw.ckpt", "wb") as f:
        pickle.dump({"state_dict": RunsCode(marker)}, f)
    torch.save(
        {"state_dict": {}, "hyper_parameters": RunsCode(marker)}, zipped := tmp_path / "z.ckpt"
    )
    for path in (raw, zipped):
        with pytest.raises(CheckpointError, match="can read safely"):
            load_checkpoint(path)
        with pytest.raises(pickle.UnpicklingError):
            AtomicCheckpointIO().load_checkpoint(path)  # what trainer.fit(ckpt_path) uses
    assert not marker.exists()
    # The unsafe path really would have run it: the test can fail.
    torch.load(zipped, weights_only=False)
    assert marker.exists()


def test_no_credential_reaches_the_outputs(trained, tmp_path: Path, monkeypatch):
    secret = "wandb-v1-0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    monkeypatch.setenv("WANDB_MODE", "offline")
    # As if given on the command line: W&B records sys.argv.
    monkeypatch.setattr(sys, "argv", ["src/train.py", "+notify.slack_token=xoxb-99887766"])
    cfg = compose_config(
        folder_overrides(
            trained["root"], "logger=[csv,wandb]", "+notify.slack_token=xoxb-99887766"
        ),
        tmp_path / "run",
    )
    metrics = run_task(train, cfg)
    assert metrics["status"] == "completed"
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files), "the W&B run was written"
    for path in files:
        data = path.read_bytes()
        assert secret.encode() not in data, path
        assert b"xoxb-99887766" not in data, path


def test_redaction_covers_keys_env_values_and_overrides(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    cfg = {
        "logger": {"wandb": {"api_key": "k" * 40, "project": "p"}},
        "note": "hf_abcdefghijklmnop",
    }
    assert redact_secrets(cfg) == {
        "logger": {"wandb": {"api_key": REDACTED, "project": "p"}},
        "note": REDACTED,
    }
    assert redact_secrets(["model=alexnet", "+wandb.api_key=abc"]) == [
        "model=alexnet",
        f"+wandb.api_key={REDACTED}",
    ]


def test_object_store_key_ids_are_redacted(monkeypatch):
    """data=stream on s3://: AWS_ACCESS_KEY_ID names no 'key' in the api_key sense."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID1234")
    assert redact_secrets({"note": "id AKIAEXAMPLEKEYID1234"}) == {"note": f"id {REDACTED}"}
    assert redact_secrets(["+storage.aws_access_key_id=AKIA1"]) == [
        f"+storage.aws_access_key_id={REDACTED}"
    ]


def test_saved_hydra_config_is_scrubbed(tmp_path: Path):
    saved = tmp_path / ".hydra"
    saved.mkdir()
    (saved / "config.yaml").write_text("model: alexnet\nnotify:\n  slack_token: xoxb-1234\n")
    (saved / "overrides.yaml").write_text("- +notify.slack_token=xoxb-1234\n")
    config = OmegaConf.create(
        {"hydra": {"output_subdir": ".hydra", "runtime": {"output_dir": str(tmp_path)}}}
    )
    RunDirGuard().on_job_start(config=config, task_function=None)
    for name in ("config.yaml", "overrides.yaml"):
        text = (saved / name).read_text()
        assert "xoxb-1234" not in text and REDACTED in text
    assert "model: alexnet" in (saved / "config.yaml").read_text()
