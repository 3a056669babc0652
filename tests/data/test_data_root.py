"""`data.root=DIR` on its own means "my folder": the folder defaults, never the built-in
slice's config, and the built-in tree is only ever written to its own place."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml
from helpers.project import compose_config, make_image_folder, run_entry_point
from hydra._internal.utils import get_args_parser
from omegaconf import OmegaConf

from alexnet_lab.data.builtin import fashion_mnist_mini
from alexnet_lab.errors import DataError
from alexnet_lab.runs import folder_data_for_given_root


@pytest.mark.parametrize(
    ("args", "added"),
    [
        (["data.root=/d"], True),
        (["++data.root=/d", "seed=1"], True),
        (["-m", "data.root=/a,/b"], True),
        (["data=imagenet", "data.root=/d"], False),
        (["experiment=imagenet_paper", "data.root=/d"], False),
        (["resume=/runs/x", "data.root=/d"], False),
        (["seed=1"], False),
    ],
)
def test_a_root_without_a_data_choice_selects_the_folder_config(args, added):
    argv = ["src/train.py", *args]
    given = folder_data_for_given_root(argv)
    assert given.count("data=folder") == (1 if added else 0)
    assert [a for a in given if a != "data=folder"] == argv


# What users type: Hydra's flags (and their values) before, between and after the overrides.
COMMAND_LINES = [
    "data.root=/d model.activation=relu,tanh -m",
    "-m data.root=/d",
    "--multirun data.root=/a,/b seed=1 --cfg job",
    "data.root=/d --cfg job",
    "--cfg job data.root=/d",
    "--cfg job --resolve data.root=/d",
    "data.root=/d --cfg hydra -p hydra.job",
    "--cfg=all data.root=/d",
    "--info defaults data.root=/d",
    "data.root=/d --info",
    "-cn train data.root=/d --cfg job",
    "--config-name=train data.root=/d",
    "-cd /tmp data.root=/d --package data",
    "--config-dir=/tmp seed=2 data.root=/d -m",
]


@pytest.mark.parametrize("line", COMMAND_LINES)
def test_the_folder_choice_reaches_hydra_whatever_the_flags(line: str):
    """Hydra's own parser takes the overrides as one run of words: data=folder must land in
    it, wherever the flags are, and a flag's value (`--cfg job`) is not an override."""
    argv = folder_data_for_given_root(["src/train.py", *shlex.split(line)])
    parsed = get_args_parser().parse_args(argv[1:])
    assert parsed.overrides.count("data=folder") == 1
    assert [o for o in parsed.overrides if o != "data=folder"] == [
        w for w in shlex.split(line) if "=" in w and not w.startswith("-")
    ]


@pytest.mark.parametrize(
    "script, flags_first",
    [("train.py", False), ("train.py", True), ("tune.py", False), ("tune.py", True)],
)
def test_cfg_job_with_a_root_alone_shows_the_folder_config(tmp_path, script, flags_first):
    given = [f"data.root={tmp_path}"] + (["tune.dir=study"] if script == "tune.py" else [])
    args = ["--cfg", "job", *given] if flags_first else [*given, "--cfg", "job"]
    shown = yaml.safe_load(run_entry_point(script, *args, cwd=tmp_path).stdout)
    assert shown["data"]["_target_"] == "alexnet_lab.data.ImageFolderDataModule"
    assert shown["data"]["root"] == str(tmp_path)


def test_a_multirun_with_the_flag_last_trains_on_the_folder(tmp_path: Path):
    root = make_image_folder(tmp_path / "photos", per_class=2)
    run_entry_point(
        "train.py",
        f"data.root={root}",
        "model.activation=relu,tanh",
        "data.num_workers=0",
        "data.batch_size=6",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=1",
        "logger=csv",
        "callbacks=none",
        "-m",
        cwd=tmp_path,
    )
    jobs = sorted(tmp_path.glob("outputs/train/multiruns/*/[0-9]/metrics.json"))
    assert len(jobs) == 2
    for metrics, activation in zip(jobs, ("relu", "tanh"), strict=True):
        saved = OmegaConf.load(metrics.parent / ".hydra" / "config.yaml")
        assert json.loads(metrics.read_text())["status"] == "completed"
        assert saved.data.root == str(root) and saved.model.activation == activation
        assert saved.data._target_ == "alexnet_lab.data.ImageFolderDataModule"


def test_the_folder_config_is_what_a_root_alone_gets(tmp_path: Path):
    argv = folder_data_for_given_root(["train.py", "data.root=/d"])
    data = OmegaConf.to_container(compose_config(argv[1:], tmp_path).data, resolve=True)
    assert data["_target_"] == "alexnet_lab.data.ImageFolderDataModule"
    assert "prepare" not in data
    assert data["mean"] == [0.485, 0.456, 0.406] and data["std"] == [0.229, 0.224, 0.225]
    assert data["num_workers"] == 4


def test_builtin_data_refuses_a_foreign_root_and_writes_nothing(tmp_path: Path):
    foreign = tmp_path / "mistyped" / "dir"
    with pytest.raises(DataError, match="data=folder"):
        fashion_mnist_mini(foreign, home=tmp_path / "data" / "fashion-mnist-mini")
    assert not (tmp_path / "mistyped").exists() and not (tmp_path / "data").exists()


def test_train_on_a_root_alone_uses_that_folder(tmp_path: Path):
    root = make_image_folder(tmp_path / "photos", per_class=4)
    run_entry_point(
        "train.py",
        f"data.root={root}",
        "data.num_workers=0",
        "data.batch_size=4",
        "trainer.max_epochs=1",
        "logger=csv",
        "callbacks=none",
        cwd=tmp_path,
    )
    (metrics,) = tmp_path.glob("outputs/train/runs/*/metrics.json")
    saved = OmegaConf.load(metrics.parent / ".hydra" / "config.yaml")
    assert json.loads(metrics.read_text())["status"] == "completed"
    assert saved.data.root == str(root) and "prepare" not in saved.data
    assert not (tmp_path / "data").exists()  # the built-in tree was not written anywhere


def test_a_missing_root_is_one_error_and_creates_nothing(tmp_path: Path):
    missing = tmp_path / "no" / "such" / "dir"
    result = run_entry_point(
        "train.py", f"data.root={missing}", "logger=csv", cwd=tmp_path, check=False
    )
    assert result.returncode == 1
    assert f"data.root={missing} does not exist" in result.stdout + result.stderr
    assert not (tmp_path / "no").exists() and not (tmp_path / "data").exists()
