"""What a batch size means with several devices: data.batch_size is per device,
data.global_batch_size is per optimizer step and split over the devices (or the
launcher's world size under torchrun/srun); the paper preset keeps 128 per step in fp32.
(The 2-rank run that records the split in metrics.json is in test_ddp.py.)"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import pytest
from helpers.project import compose_config

from alexnet_lab.checks import check_train_config
from alexnet_lab.data import SyntheticDataModule
from alexnet_lab.data.sharding import batch_per_device
from alexnet_lab.errors import ConfigError
from alexnet_lab.training.lightning_private import SweepSafeDDPStrategy
from alexnet_lab.training.ranks import batch_split, world_size

LAUNCHER_ENV = ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "SLURM_JOB_NAME", "LOCAL_RANK", "WORLD_SIZE")


@pytest.mark.parametrize(
    ("batch_size", "global_batch_size", "world", "expected"),
    [
        (128, None, 1, 128),  # per device, as before
        (128, None, 8, 128),  # per device: 1024 per step on 8 devices
        (None, 128, 1, 128),
        (None, 128, 8, 16),  # the paper's 128 per step on 8 GPUs
        (None, 128, 2 * 4, 16),  # 2 nodes x 4 devices
        (16, 128, 8, 16),  # both given and consistent
    ],
)
def test_batch_per_device(batch_size, global_batch_size, world, expected):
    assert batch_per_device(batch_size, global_batch_size, world) == expected


@pytest.mark.parametrize(
    ("batch_size", "global_batch_size", "world", "message"),
    [
        (None, 128, 3, "does not split evenly over 3 devices"),
        (128, 128, 8, r"128 per device x 8 devices = 1024 .* data.batch_size=null"),
        (None, None, 1, "both null"),
    ],
)
def test_batch_per_device_errors(batch_size, global_batch_size, world, message):
    with pytest.raises(ConfigError, match=message):
        batch_per_device(batch_size, global_batch_size, world)


def ddp_trainer(devices: int, num_nodes: int = 1) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=devices,
        num_nodes=num_nodes,
        strategy=SweepSafeDDPStrategy(),
        logger=False,
        enable_checkpointing=False,
    )


@pytest.fixture
def no_launcher(monkeypatch) -> pytest.MonkeyPatch:
    for key in LAUNCHER_ENV:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_world_size_is_devices_times_nodes(no_launcher):
    assert world_size(ddp_trainer(2, num_nodes=3)) == 6
    assert world_size(L.Trainer(accelerator="cpu", devices=1, logger=False)) == 1


def test_world_size_under_torchrun_is_the_launchers(no_launcher):
    for key, value in {
        "TORCHELASTIC_RUN_ID": "test",
        "WORLD_SIZE": "4",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "GROUP_RANK": "0",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }.items():
        no_launcher.setenv(key, value)
    assert world_size(ddp_trainer(1)) == 4  # not trainer.devices


def test_world_size_under_srun_is_the_number_of_tasks(no_launcher):
    for key, value in {
        "SLURM_NTASKS": "8",
        "SLURM_JOB_NAME": "train",
        "SLURM_NTASKS_PER_NODE": "4",
        "SLURM_NNODES": "2",
        "SLURM_NODEID": "0",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODELIST": "node1",
        "SLURM_JOB_ID": "1",
    }.items():
        no_launcher.setenv(key, value)
    assert world_size(ddp_trainer(4, num_nodes=2)) == 8


def test_batch_split_is_logged_and_refused_when_it_does_not_split(no_launcher, caplog):
    datamodule = SyntheticDataModule(batch_size=None, global_batch_size=128)
    with caplog.at_level(logging.INFO, logger="alexnet_lab.training.ranks"):
        recorded = batch_split(datamodule, ddp_trainer(2, num_nodes=2))
    assert recorded == {
        "data/batch_size_per_device": 32,
        "data/world_size": 4,
        "data/global_batch_size": 128,
    }
    assert "32 images per device x 4 devices = 128 images per optimizer step" in caplog.text
    with pytest.raises(ConfigError, match="global_batch_size=128 does not split evenly over 3"):
        batch_split(datamodule, ddp_trainer(3))


def test_loaders_without_a_trainer_load_the_whole_global_batch():
    datamodule = SyntheticDataModule(batch_size=None, global_batch_size=24, val_size=8)
    datamodule.setup("fit")
    assert datamodule.train_dataloader().batch_size == 24


def test_paper_preset_is_128_images_per_step_in_fp32_at_any_device_count(tmp_path: Path):
    paper = ["experiment=imagenet_paper", "data.root=/data/imagenet"]
    for devices, num_nodes in ((1, 1), (8, 1), (4, 2)):
        cluster = ["trainer=ddp", f"trainer.devices={devices}", f"trainer.num_nodes={num_nodes}"]
        cfg = compose_config([*paper, *(cluster if devices > 1 else [])], tmp_path)
        assert cfg.trainer.precision == "32-true"
        per_device = batch_per_device(
            cfg.data.batch_size, cfg.data.global_batch_size, devices * num_nodes
        )
        assert per_device * devices * num_nodes == 128
    asked = compose_config(
        ["experiment=imagenet_paper", "trainer=ddp", "trainer.precision=bf16-mixed"], tmp_path
    )
    assert asked.trainer.precision == "bf16-mixed"
    for trainer in ("gpu", "ddp"):  # outside the preset GPUs train in bf16 mixed precision
        cfg = compose_config([f"trainer={trainer}"], tmp_path)
        assert cfg.trainer.precision == "bf16-mixed"
        assert cfg.data.batch_size == 128 and cfg.data.global_batch_size is None


def test_config_check_names_bad_batch_keys(tmp_path: Path):
    for overrides, message in (
        (["data.batch_size=null"], "both null"),
        (["data.global_batch_size=0"], "data.global_batch_size=0"),
    ):
        cfg = compose_config(["trainer.max_epochs=1", *overrides], tmp_path)
        with pytest.raises(ConfigError, match=message):
            check_train_config(cfg)
