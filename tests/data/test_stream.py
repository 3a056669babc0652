"""LitData shards: `prepare format=litdata` writes them, data=stream reads them exactly as
data=folder reads the same prepared images, locally and from an S3-compatible server;
under DDP each image is trained once per epoch; a kill -9 mid-epoch resumes from the
loader's saved position; make bench compares shards with folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers.project import SRC, TESTS, compose_config, make_image_folder
from helpers.s3_server import s3_server_env
from helpers.stream_probe import IdSample, ids_of, read_records
from torchvision.io import decode_image, encode_jpeg, write_file

from alexnet_lab.bench.stream import bench_stream_vs_folder
from alexnet_lab.data import ImageFolderDataModule
from alexnet_lab.data.gpu_decode import decode_batch
from alexnet_lab.data.prepare import FAILED_LIST, prepare
from alexnet_lab.data.shards import CLASSES_FILE, TREE_DIR, read_manifest
from alexnet_lab.data.stream import StreamingDataModule, streaming_dataset
from alexnet_lab.data.transforms import EvalTransform
from alexnet_lab.errors import ConfigError, DataError
from alexnet_lab.inference.predict import predict
from alexnet_lab.runs import run_task
from alexnet_lab.tasks import evaluate, train

CLASSES = ["n01440764", "n01443537", "n01484850"]
STORED, CROP = 32, 28  # prepare size=32; data.resize_size=32: crops only, no resampling
LOADER = {"crop_size": CROP, "resize_size": STORED, "batch_size": 4, "num_workers": 0}


def prepare_shards(src: Path, dst: Path, tmp: Path) -> dict:
    overrides = [f"src={src}", f"dst={dst}", "format=litdata", f"size={STORED}", "workers=2"]
    cfg = compose_config([*overrides, "progress=false"], tmp, config_name="prepare")
    return prepare(cfg)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """Raw images (one unreadable) -> DST/jpeg (the prepared tree) + DST shards."""
    tmp = tmp_path_factory.mktemp("stream")
    raw = make_image_folder(tmp / "raw", per_class=8, size=(40, 52), splits=("train",))
    make_image_folder(tmp / "raw", per_class=3, size=(44, 40), splits=("val",))
    (raw / "train" / CLASSES[0] / "broken.JPEG").write_bytes(b"\xff\xd8\xff not a jpeg")
    summary = prepare_shards(raw, tmp / "out", tmp)
    assert summary["failed"] == 1 and summary["shard_images"] == {"train": 24, "val": 9}
    return tmp / "out"


def records(root: Path, split: str) -> list[dict]:
    return list(streaming_dataset(str(root), split, sample=lambda r: r, shuffle=False))


def folder_and_stream(root: Path, **kwargs):
    folder = ImageFolderDataModule(root=str(root / TREE_DIR), **{**LOADER, **kwargs})
    stream = StreamingDataModule(root=str(root), **{**LOADER, **kwargs})
    folder.setup("fit"), stream.setup("fit")
    return folder, stream


def all_batches(loader) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(loader)
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


# --- prepare format=litdata ------------------------------------------------------------


def test_shards_hold_the_prepared_jpeg_bytes_labels_and_class_list(shards: Path):
    tree = shards / TREE_DIR
    assert "broken.JPEG" in (tree / FAILED_LIST).read_text()  # listed as prepare lists it
    manifest = read_manifest(str(shards))
    assert manifest["classes"] == CLASSES and manifest["size"] == STORED
    for split, count in (("train", 24), ("val", 9)):
        rows = records(shards, split)
        assert sorted(r["index"] for r in rows) == list(range(count))
        for r in rows:
            path = tree / split / r["name"]
            assert r["image"] == path.read_bytes()  # the prepared file, byte for byte
            assert r["label"] == CLASSES.index(path.parent.name)
            assert decode_image(str(path)).shape == (3, STORED, STORED)


def test_prepare_litdata_resumes_and_refuses_a_tree_that_changed(shards: Path, tmp_path):
    raw = shards.parent / "raw"
    again = prepare_shards(raw, shards, tmp_path)
    assert again["converted"] == 0 and again["packed_splits"] == []  # nothing redone
    (shards / "val" / "index.json").unlink()  # a pack cut short before its index
    assert prepare_shards(raw, shards, tmp_path)["packed_splits"] == ["val"]
    assert len(records(shards, "val")) == 9

    extra = raw / "train" / CLASSES[1] / "new.JPEG"
    write_file(str(extra), encode_jpeg(torch.zeros(3, 40, 40, dtype=torch.uint8)))
    try:
        with pytest.raises(DataError, match="the tree changed after packing"):
            prepare_shards(raw, shards, tmp_path)
    finally:
        extra.unlink()
        (shards / TREE_DIR / "train" / CLASSES[1] / "new.JPEG").unlink()


def test_prepare_format_errors(tmp_path):
    with pytest.raises(ConfigError, match="format='tfrecord'"):
        prepare(compose_config(["src=a", "dst=b", "format=tfrecord"], tmp_path, "prepare"))
    with pytest.raises(ConfigError, match="aws s3 sync"):
        prepare(compose_config(["src=a", "dst=s3://b/x", "format=litdata"], tmp_path, "prepare"))


# --- data=stream reads what data=folder reads ----------------------------------------


def test_validation_batches_equal_the_folder_ones(shards: Path):
    for switches in ({}, {"ten_crop": True}, {"input_scale": "paper", "std": [1 / 255] * 3}):
        folder, stream = folder_and_stream(shards, augment=False, **switches)
        assert stream.classes == folder.classes == CLASSES
        images, labels = all_batches(stream.val_dataloader())
        expected, expected_labels = all_batches(folder.val_dataloader())
        assert torch.equal(images, expected) and torch.equal(labels, expected_labels), switches
        normalised = stream.on_after_batch_transfer((images, labels), 0)[0]
        assert torch.equal(normalised, folder.on_after_batch_transfer((expected, labels), 0)[0])
    assert images.shape == (9, 3, CROP, CROP) and normalised.abs().max() > 20  # paper scale


def stored_images(shards: Path) -> dict[int, torch.Tensor]:
    return {
        r["index"]: decode_image(str(shards / TREE_DIR / "train" / r["name"]))
        for r in records(shards, "train")
    }


@pytest.mark.parametrize("augment", [False, True])
def test_training_crops_and_flips_as_with_folders(shards: Path, augment: bool):
    stream = StreamingDataModule(root=str(shards), augment=augment, pca_std=0.1, **LOADER)
    stream.sample_class = IdSample
    stream.setup("fit")
    images, targets = all_batches(stream.train_dataloader())
    ids = targets[:, 1].tolist()
    assert sorted(ids) == list(range(24))  # one epoch: every image once
    stored = stored_images(shards)
    centre = EvalTransform(STORED, CROP)
    moved = 0
    for image, i in zip(images, ids, strict=True):
        views = [
            v[:, y : y + CROP, x : x + CROP]
            for v in (stored[i], stored[i].flip(-1))
            for y in range(STORED - CROP + 1)
            for x in range(STORED - CROP + 1)
        ]
        assert any(torch.equal(image, v) for v in views)  # a crop (maybe flipped) of it
        moved += not torch.equal(image, centre(stored[i]))
    assert (moved > 0) == augment
    assert stream.normalizer.pca_std == (0.1 if augment else 0.0)  # augment=false: no noise


def test_the_gpu_decoding_path_streams_the_jpeg_bytes(shards: Path):
    """data.decode_device=cuda: workers pass the records' bytes; decode_batch (run on the
    CPU here, no GPU needed) turns them into the batch the CPU path makes."""
    encoded_dm = StreamingDataModule(root=str(shards), augment=False, **LOADER)
    encoded_dm.decode_device = "cuda"  # past the GPU check: only the loader side runs
    encoded_dm.setup("fit")
    encoded, labels = next(iter(encoded_dm.val_dataloader()))
    assert isinstance(encoded, list) and encoded[0].dtype == torch.uint8 and encoded[0].dim() == 1
    images = decode_batch(encoded, "cpu", encoded_dm.device_transforms[1])
    _, stream = folder_and_stream(shards, augment=False)
    expected, expected_labels = next(iter(stream.val_dataloader()))
    assert torch.equal(images, expected) and torch.equal(labels, expected_labels)


def test_stream_config_errors(shards: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="persistent_workers=false"):
        StreamingDataModule(root=str(shards), persistent_workers=True, num_workers=2)
    with pytest.raises(ConfigError, match="holds credentials"):
        StreamingDataModule(root="s3://KEY:SECRET@bucket/imagenet")
    with pytest.raises(DataError, match="format=litdata"):
        _ = StreamingDataModule(root=str(tmp_path)).classes
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="decode_device=cuda"):
            StreamingDataModule(root=str(shards), decode_device="cuda")
    two_ranks = StreamingDataModule(root=str(shards), **{**LOADER, "batch_size": 8})
    two_ranks.trainer = SimpleNamespace(world_size=2)
    with pytest.raises(DataError, match="9 images, fewer than one batch of 8 for each of the 2"):
        two_ranks.setup("fit")


def test_train_eval_and_predict_on_shards(shards: Path, tmp_path: Path):
    overrides = ["data=stream", f"data.root={shards}", "data.batch_size=8", "data.num_workers=0"]
    run = run_task(
        train, compose_config([*overrides, "trainer.max_epochs=1", "logger=csv"], tmp_path / "t")
    )
    assert run["status"] == "completed" and run["global_step"] == 3
    checkpoint = torch.load(run["last_checkpoint"], weights_only=True)
    assert checkpoint["hyper_parameters"]["class_names"] == CLASSES
    assert "combined_loader" in checkpoint["loops"]["fit_loop"]["state_dict"]  # loader state

    scores = run_task(
        evaluate, compose_config([f"ckpt_path={run['last_checkpoint']}"], tmp_path / "e", "eval")
    )
    assert scores["status"] == "completed"
    assert scores["eval/acc_top1"] == pytest.approx(run["val/acc_top1"])

    image = shards / TREE_DIR / "val" / CLASSES[2] / f"{CLASSES[2]}_0000.JPEG"
    overrides = [f"ckpt_path={run['last_checkpoint']}", f"images=[{image}]", "output=json"]
    summary = predict(compose_config(overrides, tmp_path / "p", "predict"))
    (line,) = Path(summary["predictions"]).read_text().splitlines()
    top5 = json.loads(line)["top5"]
    assert {entry["label"] for entry in top5} == set(CLASSES)


# --- object storage ------------------------------------------------------------------


def test_s3_root_streams_the_same_images(shards: Path, tmp_path: Path):
    with s3_server_env(shards, tmp_path) as env:
        remote = StreamingDataModule(
            root=env["TEST_S3_ROOT"], cache_dir=str(tmp_path / "cache"), augment=False, **LOADER
        )
        assert remote.classes == CLASSES
        remote.setup("fit")
        _, local = folder_and_stream(shards, augment=False)
        assert all(
            map(
                torch.equal,
                all_batches(remote.val_dataloader()),
                all_batches(local.val_dataloader()),
            )
        )
        with pytest.raises(DataError, match="does not exist"):
            read_manifest(env["TEST_S3_ROOT"] + "-missing")


@pytest.mark.slow
def test_s3_training_run_writes_no_credentials(shards: Path, tmp_path: Path):
    with s3_server_env(shards, tmp_path) as env:
        run_env = {**os.environ, **env, "ALEXNET_LAB_ROOT": str(tmp_path), "WANDB_MODE": "offline"}
        result = subprocess.run(
            [
                sys.executable,
                str(SRC / "train.py"),
                "data=stream",
                f"data.root={env['TEST_S3_ROOT']}",
                "data.batch_size=8",
                "data.num_workers=2",
                "trainer.max_epochs=1",
                "logger=wandb",
                f"data.cache_dir={tmp_path / 'cache'}",
            ],
            cwd=tmp_path,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
    written = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any("wandb" in p.parts for p in written)  # the W&B offline run is among them
    for secret in (env["AWS_SECRET_ACCESS_KEY"], env["AWS_ACCESS_KEY_ID"]):
        for text in (result.stdout, result.stderr, *(p.read_bytes() for p in written)):
            assert (secret.encode() if isinstance(text, bytes) else secret) not in text


# --- DDP and mid-epoch resume (tests/helpers/stream_probe.py records the sample ids) ---------


def probe_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "ALEXNET_LAB_ROOT": str(tmp_path), **extra}


def probe_run(shards: Path, *extra: str) -> list[str]:
    return [
        "data=stream",
        "data._target_=helpers.stream_probe.IdRecordingStreamDataModule",
        f"data.root={shards}",
        "data.batch_size=4",
        "logger=csv",
        *extra,
    ]


@pytest.mark.slow
def test_two_ranks_train_each_image_once_per_epoch_and_validate_as_one(shards, tmp_path):
    ddp = [
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
    ]
    # lr 1e-30: the weights stay the initial ones, so a one-process eval of the checkpoint
    # must give the two ranks' validation exactly.
    overrides = probe_run(
        shards, *ddp, "trainer.max_epochs=2", "data.num_workers=1", "optimizer.lr=1e-30"
    )
    result = subprocess.run(
        [sys.executable, str(SRC / "train.py"), *overrides],
        cwd=tmp_path,
        env=probe_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["global_step"] == 2 * 24 // 8
    # The split sizes over both ranks, not rank 0's share.
    assert (metrics["data/train_images"], metrics["data/val_images"]) == (24, 9)
    rows = read_records(run_dir)
    for epoch in (0, 1):
        per_rank = [
            ids_of([r for r in rows if r["rank"] == rank], stage="train", epoch=epoch)
            for rank in (0, 1)
        ]
        assert len(per_rank[0]) == len(per_rank[1]) == 12  # both ranks, same number of steps
        assert sorted(per_rank[0] + per_rank[1]) == list(range(24)), epoch  # each once
        # Validation: 9 images, every one on exactly one rank (no padding repeats).
        assert ids_of(rows, stage="val", epoch=epoch, sanity=False) == list(range(9))

    checkpoint = metrics["last_checkpoint"]
    scores = run_task(evaluate, compose_config([f"ckpt_path={checkpoint}"], tmp_path / "e", "eval"))
    assert scores["eval/acc_top1"] == pytest.approx(metrics["val/acc_top1"], abs=1e-6)
    assert scores["eval/loss"] == pytest.approx(metrics["val/loss"], abs=1e-5)


@pytest.mark.slow
def test_kill_9_mid_epoch_resumes_from_the_loaders_position(shards: Path, tmp_path: Path):
    # 24 images, batch 4: 6 steps an epoch. Step checkpoints every 4 steps (4, 8, ...);
    # the probe kills the process group as step 9 (epoch 1, its 4th batch) arrives, so the
    # newest checkpoint, step 8, is in the middle of epoch 1: two batches of it trained.
    overrides = probe_run(
        shards,
        "trainer.max_epochs=2",
        "data.num_workers=2",
        "callbacks.step_checkpoint.every_n_train_steps=4",
    )
    killed = subprocess.run(
        [sys.executable, str(SRC / "train.py"), *overrides],
        cwd=tmp_path,
        env=probe_env(tmp_path, STREAM_PROBE_KILL_AT_STEP="9"),
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    assert not (run_dir / "metrics.json").exists()
    before = read_records(run_dir)
    checkpoint = torch.load(
        next((run_dir / "checkpoints").glob("latest-*step000008.ckpt")), weights_only=True
    )
    loader_state = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state[0]["num_samples_yielded"] == 8  # batches 6 and 7: 2 x 4 images

    resumed = subprocess.run(
        [sys.executable, str(SRC / "train.py"), f"resume={run_dir}"],
        cwd=tmp_path,
        env=probe_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["global_step"] == 12
    assert metrics["resumed_from"]["global_step"] == 8
    after = read_records(run_dir)[len(before) :]
    kept = [r for r in before if r["stage"] == "train" and r["step"] < 8]  # in the checkpoint
    assert ids_of(kept, epoch=0) == list(range(24))
    seen_in_epoch_1 = ids_of(kept, epoch=1) + ids_of(after, stage="train", epoch=1)
    assert len(ids_of(kept, epoch=1)) == 8 and len(ids_of(after, stage="train")) == 16
    assert sorted(seen_in_epoch_1) == list(range(24))  # none twice, none skipped


# --- make bench ----------------------------------------------------------------------


def test_bench_stream_vs_folder_measures_both_readers(shards: Path, tmp_path: Path):
    result = bench_stream_vs_folder(shards / TREE_DIR, tmp_path / "shards", batch_size=8, repeats=1)
    assert result["images"] == 24 and result["stream_vs_folder"] > 0
    assert all(rate > 0 for rate in result["images_per_s_per_core"].values())
    assert (tmp_path / "shards" / CLASSES_FILE).is_file()
