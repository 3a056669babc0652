"""The ablation study's machinery: dataset converters, subsets, the held-out slice, the
width multiplier, a study's run.sh, and the notebook.

Converters are tested on small arrays written here (IDX files, a fake CIFAR-10), never on
downloads or the Debian package; run.sh and the notebook on a real sweep of very short
runs on such a fake Fashion-MNIST. The report's own tests: tests/test_analysis_*.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from helpers.fakes import fake_fashion_source, write_idx
from helpers.project import REPO, compose_config, make_image_folder
from hydra.utils import instantiate
from nbclient import NotebookClient
from torchvision.io import read_image

from alexnet_lab.analysis import runs as records
from alexnet_lab.data import converters
from alexnet_lab.errors import ConfigError, DataError
from alexnet_lab.models import AlexNet

# ------------------------------------------------------------------ converters


def test_read_idx_reads_shape_and_values(tmp_path: Path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for compress in (True, False):
        path = write_idx(tmp_path / f"x{compress}", array, compress)
        np.testing.assert_array_equal(converters.read_idx(path), array)


def test_read_idx_rejects_bad_and_truncated_files(tmp_path: Path):
    (tmp_path / "bad").write_bytes(b"\x89PNG not idx")
    with pytest.raises(DataError, match="not an IDX"):
        converters.read_idx(tmp_path / "bad")
    path = write_idx(tmp_path / "short", np.zeros((4, 5), np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated"):
        converters.read_idx(path)


def test_fashion_mnist_converter_writes_every_image_under_its_class(tmp_path: Path):
    arrays = fake_fashion_source(tmp_path / "idx")
    root = tmp_path / "fashion-mnist"
    converters.fashion_mnist(root, source=tmp_path / "idx")
    for split, prefix in (("train", "train"), ("val", "t10k")):
        images, labels = arrays[prefix]
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(
            converters.FASHION_MNIST_CLASSES
        )
        files = sorted((root / split).glob("*/*.png"))
        assert len(files) == len(labels)
        # File NNNNN is source index NNNNN: check its class folder and its pixels.
        for index in (0, len(labels) - 1):
            name = converters.FASHION_MNIST_CLASSES[labels[index]]
            png = read_image(str(root / split / name / f"{index:05d}.png"))
            np.testing.assert_array_equal(png[0].numpy(), images[index])
    converters.fashion_mnist(root, source=tmp_path / "missing")  # already there: no work


def test_fashion_mnist_converter_names_a_missing_file(tmp_path: Path):
    fake_fashion_source(tmp_path / "idx")
    (tmp_path / "idx" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        converters.fashion_mnist(tmp_path / "out", source=tmp_path / "idx")
    assert not (tmp_path / "out").exists()


def test_cifar10_converter_keeps_rgb_order(tmp_path: Path, monkeypatch):
    rng = np.random.default_rng(1)

    class FakeCIFAR10:  # torchvision's attributes: data (N, 32, 32, 3) uint8, targets list
        def __init__(self, root, train, download):
            n = 12 if train else 6
            self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = list(np.arange(n) % 10)
            made.append(self)

    made: list[FakeCIFAR10] = []
    monkeypatch.setattr("torchvision.datasets.CIFAR10", FakeCIFAR10)
    converters.cifar10(tmp_path / "cifar10")
    train = made[0]
    png = read_image(str(tmp_path / "cifar10" / "train" / "automobile" / "00001.png"))
    np.testing.assert_array_equal(png.permute(1, 2, 0).numpy(), train.data[1])
    assert len(list((tmp_path / "cifar10" / "val").glob("*/*.png"))) == 6


def test_first_per_class_keeps_the_first_images_of_each_class():
    samples = [(f"{c}/{i}", c) for c in range(3) for i in range(5)]
    kept = converters.first_per_class(samples, 2)
    assert kept == [("0/0", 0), ("0/1", 0), ("1/0", 1), ("1/1", 1), ("2/0", 2), ("2/1", 2)]
    assert converters.first_per_class(samples, None) == samples
    with pytest.raises(ConfigError):
        converters.first_per_class(samples, 0)


def test_data_fashion_mnist_config_converts_and_subsets(tmp_path: Path):
    fake_fashion_source(tmp_path / "idx", n_train=40, n_test=20)
    cfg = compose_config(
        [
            "data=fashion_mnist",
            f"paths.data_dir={tmp_path / 'data'}",
            f"data.prepare.source={tmp_path / 'idx'}",
            "data.train_per_class=3",
            "data.val_per_class=1",
            "data.num_workers=0",
        ],
        tmp_path / "out",
    )
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert datamodule.num_classes == 10
    assert (len(datamodule.train_set), len(datamodule.val_set)) == (30, 10)
    images, _ = next(iter(datamodule.train_dataloader()))
    assert images.shape[1:] == (3, 32, 32)  # grey PNGs come out as RGB crops


def test_subset_datamodule_on_a_plain_folder(tmp_path: Path):
    root = make_image_folder(tmp_path / "tree", per_class=4)
    dm = converters.SubsetFolderDataModule(
        root=str(root), train_per_class=2, val_per_class=None, crop_size=24
    )
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (6, 12)


# ------------------------------------------------------------ held-out slice, order


def test_split_holdout_takes_the_end_of_each_class_and_never_overlaps():
    samples = [(f"{c}/{i}", c) for c in range(2) for i in range(6)]
    train, holdout = converters.split_holdout(samples, 2, 3)
    assert train == [("0/0", 0), ("0/1", 0), ("1/0", 1), ("1/1", 1)]
    assert holdout == [(f"{c}/{i}", c) for c in range(2) for i in (3, 4, 5)]
    train_all, _ = converters.split_holdout(samples, None, 3)
    assert not set(train_all) & set(holdout) and len(train_all) == 6
    with pytest.raises(ConfigError, match="too few"):
        converters.split_holdout(samples, 4, 3)
    with pytest.raises(ConfigError, match="holdout_per_class"):
        converters.split_holdout(samples, 2, 0)


def test_holdout_loader_and_seeded_training_order(tmp_path: Path):
    root = make_image_folder(tmp_path / "tree", per_class=6)
    kwargs = dict(root=str(root), crop_size=24, batch_size=4, num_workers=0)

    def first_batches(seed: int, global_seed: int) -> list[torch.Tensor]:
        dm = converters.SubsetFolderDataModule(
            train_per_class=3, holdout_per_class=2, shuffle_seed=seed, **kwargs
        )
        dm.setup("fit")
        torch.manual_seed(global_seed)  # what dropout and augmentation draw from
        return [targets for _, targets in dm.train_dataloader()]

    def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    dm = converters.SubsetFolderDataModule(train_per_class=3, holdout_per_class=2, **kwargs)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.holdout_set), len(dm.val_set)) == (9, 6, 18)
    train_files = {path for path, _ in dm.train_set.samples}
    assert not train_files & {path for path, _ in dm.holdout_set.samples}
    val, holdout = dm.val_dataloader()
    assert len(holdout.dataset) == 6 and dm.val_loader_names == ["val", "holdout"]
    assert len(dm.test_dataloader().dataset) == 18  # evaluation scores val only
    # The order follows data.shuffle_seed alone: the global RNG neither decides it ...
    assert all(same(first_batches(1, 100), first_batches(1, g)) for g in (101, 102, 103))
    # ... nor hides a shuffle_seed change (several tries: 9 images could repeat by chance).
    assert not any(same(first_batches(1, 100), first_batches(s, 100)) for s in (2, 3, 4))


def test_width_scales_the_small_family_and_refuses_the_others():
    half = AlexNet("alexnet_small", num_classes=10, width=0.5)
    convs = [m.out_channels for m in half.features if isinstance(m, torch.nn.Conv2d)]
    assert convs == [16, 32, 48, 48, 32]
    assert half(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    fig1 = AlexNet("cifar_fig1", num_classes=10, width=0.5, lrn=False, dropout=0, groups=1)
    assert [m.out_channels for m in fig1.features if isinstance(m, torch.nn.Conv2d)] == [
        32,
        32,
        16,
        16,
    ]
    with pytest.raises(ConfigError, match="small family"):
        AlexNet("alexnet", width=0.5)
    with pytest.raises(ConfigError, match="multiplier"):
        AlexNet("alexnet_small", width=0)


# ------------------------------------------------ run.sh and notebook on real runs


@pytest.fixture(scope="module")
def study_records(tmp_path_factory) -> Path:
    """experiments/dropout/run.sh as a user runs it, on a fake Fashion-MNIST, two seeds of
    two epochs (with a held-out slice), then once more: the second run must skip both."""
    work = tmp_path_factory.mktemp("study")
    fake_fashion_source(work / "idx", n_train=60, n_test=20)
    experiments = work / "experiments"
    tiny = (
        f"paths.data_dir={work / 'data'} data.prepare.source={work / 'idx'} "
        "data.train_per_class=3 data.holdout_per_class=2 data.val_per_class=null "
        "trainer.max_epochs=2 trainer.check_val_every_n_epoch=1 data.batch_size=10"
    )
    script = REPO / "experiments" / "dropout" / "run.sh"
    env = {
        **os.environ,
        "EXPERIMENTS": str(experiments),
        "SEEDS": "0,1",
        "PY": sys.executable,
        "STUDY_EXTRA": tiny,
    }
    for _ in range(2):
        result = subprocess.run(
            ["bash", str(script)], env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-3000:]
    assert "every seed has its record, skipped" in result.stdout
    return experiments / "dropout" / "runs" / "no_dropout"


def test_run_sh_leaves_compact_records_and_the_report_reads_them(study_records: Path):
    runs, failed = records.load_runs(study_records)
    assert not failed and sorted(r.seed for r in runs) == [0, 1]
    for run in runs:
        assert run.path.name == f"seed_{run.seed}"
        assert (run.path / "history.csv").is_file()
        assert run.summary["data/train_images"] == 30  # 3 per class
        assert run.summary["data/holdout_images"] == 20
        assert run.summary["data/val_images"] == 20
        assert run.config["model.dropout"] == 0 and run.config["model.width"] == 0.5
        assert run.history.columns.tolist() == records.HISTORY_COLUMNS
        assert run.history[["train_acc", "val_acc", "holdout_acc"]].notna().all().all()


def test_analysis_notebook_runs_headless_on_a_sweep(
    study_records: Path, tmp_path: Path, monkeypatch
):
    source = REPO / "notebooks" / "analysis.ipynb"
    notebook = nbformat.read(source, as_version=4)
    # Outputs are stripped in git: the committed notebook is code only.
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")
    monkeypatch.setenv("ALEXNET_SWEEP", str(study_records))
    monkeypatch.setenv("ALEXNET_FIGURES", str(tmp_path))
    shutil.copy(source, tmp_path / "analysis.ipynb")
    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    text = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "2 completed runs, 0 failed" in text and "val_err" in text
    assert (tmp_path / "sweep_curves.png").stat().st_size > 1000


def test_baseline_continued_runs_the_same_jobs_longer_into_their_own_folder(tmp_path: Path):
    # PY=echo prints the job command instead of running it.
    script = REPO / "experiments" / "baseline" / "run.sh"
    env = {**os.environ, "EXPERIMENTS": str(tmp_path), "PY": "echo", "SEEDS": "0"}
    result = subprocess.run(
        ["bash", str(script), "continued"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    job = next(line for line in result.stdout.splitlines() if "src/train.py" in line)
    assert "experiment=study_small" in job and " seed=0 " in job
    assert f"hydra.sweep.dir={tmp_path}/baseline/runs-48ep " in job
    assert job.endswith("hydra.sweep.subdir=reference/seed_${seed}")
    assert "trainer.max_epochs=48" in job
    for args, message in ((["continued"], "STUDY_SCALE=cpu"), (["longer"], "usage")):
        bad = subprocess.run(
            ["bash", str(script), *args],
            env={**env, "STUDY_SCALE": "gpu"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert bad.returncode == 2 and message in bad.stderr and not bad.stdout
