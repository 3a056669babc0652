"""The ablation study's machinery: dataset converters, subsets, the report, the notebook.

Converters are tested on small arrays written here (IDX files, a fake CIFAR-10),
never on downloads or the Debian package; the report and the notebook on run
folders written here and on a real two-job sweep of very short runs.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, compose_config, make_image_folder, run_entry_point
from hydra.utils import instantiate
from nbclient import NotebookClient
from torchvision.io import read_image

from alexnet_lab import report
from alexnet_lab.data import converters
from alexnet_lab.errors import ConfigError, DataError

# ------------------------------------------------------------------ converters


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """LeCun's IDX format: 0, 0, type 0x08 (uint8), ndim, then big-endian dims and data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def fake_fashion_source(folder: Path, n_train: int = 30, n_test: int = 20) -> dict:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train": (rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10),
        "t10k": (rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test)[::-1] % 10),
    }
    for prefix, (images, labels) in arrays.items():
        # One gzipped pair and one raw pair: the Debian files are .gz, a manual copy may not be.
        compress = prefix == "train"
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return arrays


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


# ---------------------------------------------------------------------- report


def fake_run(folder: Path, train_err, val_err, overrides: list[str], steps=10) -> Path:
    """A job folder as a sweep leaves it: metrics.json and Lightning's CSV log."""
    (folder / "csv").mkdir(parents=True)
    rows = []
    for epoch, (tr, va) in enumerate(zip(train_err, val_err, strict=True)):
        step = (epoch + 1) * steps - 1
        rows.append({"epoch": epoch, "step": step, "train/loss_step": 1.0})
        rows.append(
            {
                "epoch": epoch,
                "step": step,
                "val/acc_top1": 1 - va,
                "val/acc_top5": 1 - va / 2,
                "val/loss": 0.5 + va,
            }
        )
        rows.append(
            {"epoch": epoch, "step": step, "train/acc_top1": 1 - tr, "train/loss_epoch": tr}
        )
    pd.DataFrame(rows).to_csv(folder / "csv" / "metrics.csv", index=False)
    summary = {
        "status": "completed",
        "overrides": overrides,
        "wall_s": 10.0,
        "epochs": len(train_err),
        "global_step": len(train_err) * steps,
    }
    (folder / "metrics.json").write_text(json.dumps(summary))
    return folder


def test_read_history_merges_lightning_rows_per_epoch(tmp_path: Path):
    run = fake_run(tmp_path / "r", [0.5, 0.2], [0.6, 0.3], ["seed=0"])
    history = report.read_history(run / "csv" / "metrics.csv")
    assert history["epoch"].tolist() == [1, 2]
    np.testing.assert_allclose(history["train_err"], [0.5, 0.2])
    np.testing.assert_allclose(history["val_err"], [0.6, 0.3])
    assert report.epochs_to(history, "train_err", 0.25) == 2
    assert np.isnan(report.epochs_to(history, "train_err", 0.1))


def test_statistics_helpers():
    assert report.mean_std(pd.Series([0.1, 0.3]), scale=100) == "20.0 ± 14.1"
    assert report.mean_std(pd.Series([2.0, np.nan])) == "2.0 (1/2 reached)"
    assert report.mean_std(pd.Series([np.nan])) == "not reached"
    delta, se = report.difference(pd.Series([0.1, 0.1]), pd.Series([0.3, 0.3]))
    assert (round(delta, 6), se) == (0.2, 0.0)
    assert report._verdict(0.02, 0.001, True) == "holds (off is worse)"
    assert report._verdict(-0.02, 0.001, True) == "reversed (off is better)"
    assert report._verdict(0.02, 0.02, True) == "no difference resolved"


def write_fake_studies(experiments: Path) -> None:
    """Claim 1's grid and seeds, a baseline and a dropout arm, with known curves."""
    curves = {  # (activation, lr): training error per epoch
        ("relu", 0.01): [0.40, 0.20, 0.12, 0.08],
        ("relu", 0.1): [0.90, 0.90, 0.90, 0.90],
        ("tanh", 0.01): [0.60, 0.40, 0.30, 0.20],
        ("tanh", 0.1): [0.50, 0.30, 0.14, 0.09],
    }
    for i, ((act, lr), errs) in enumerate(curves.items()):
        fake_run(
            experiments / "relu_vs_tanh/runs/grid" / str(i),
            errs,
            errs,
            [f"model.activation={act}", "model.init=default", f"optimizer.lr={lr}", "seed=0"],
        )
    for act, lr, errs in (
        ("relu", 0.01, [0.35, 0.2, 0.1, 0.05]),
        ("tanh", 0.1, [0.5, 0.3, 0.2, 0.1]),
    ):
        fake_run(
            experiments / f"relu_vs_tanh/runs/seeds/{act}/0",
            errs,
            errs,
            [f"model.activation={act}", "model.init=default", f"optimizer.lr={lr}", "seed=1"],
        )
    for seed in range(3):
        fake_run(
            experiments / f"baseline/runs/{seed}",
            [0.5, 0.3, 0.2],
            [0.4, 0.3, 0.25],
            [f"seed={seed}"],
        )
        fake_run(
            experiments / f"dropout/runs/no_dropout/{seed}",
            [0.3, 0.1, 0.02],
            [0.35, 0.32, 0.34 + seed / 100],
            ["model.dropout=0", f"seed={seed}"],
        )


def test_report_writes_tables_figures_and_the_claims_table(tmp_path: Path):
    experiments = tmp_path / "experiments"
    write_fake_studies(experiments)
    (experiments / "README.md").write_text(
        "# Claims\n<!-- claims:start -->\nSTALE\n<!-- claims:end -->\nkept\n"
    )
    (experiments / "dropout/README.md").write_text(
        "intro\n<!-- results:start -->\n<!-- results:end -->\n**Verdict:** holds, judged.\n"
    )

    assert report.seed_commands(experiments / "relu_vs_tanh") == [
        "model.activation=relu model.init=default optimizer.lr=0.01",
        "model.activation=tanh model.init=default optimizer.lr=0.1",
    ]
    rows = {r["claim"]: r for r in report.report_all(experiments)}

    fig1 = (experiments / "relu_vs_tanh/results.md").read_text()
    # At the tuned lrs, relu reaches 25% at epoch 2 with both seeds, tanh at 3; to 15%
    # relu needs 3 and 3 epochs, tanh 3 and 4.
    assert "| 4 epochs | default | relu | 0.01 | 2 | 2.0 ± 0.0 | 3.0 ± 0.0 |" in fig1
    assert "| 4 epochs | default | tanh | 0.1 | 2 | 3.0 ± 0.0 | 3.5 ± 0.7 |" in fig1
    assert "| 4 epochs | default | 1.5 | 1.2 |" in fig1  # 3 / 2 and 3.5 / 3 epochs
    for png in (
        "relu_vs_tanh/fig1_train_error.png",
        "relu_vs_tanh/lr_grid.png",
        "dropout/curves.png",
    ):
        assert (experiments / png).stat().st_size > 1000

    dropout = (experiments / "dropout/results.md").read_text()
    assert "| dropout 0 | 3 | — | 35.0 ± 1.0 |" in dropout  # final val error: 34, 35, 36
    assert "holds (off is worse)" in dropout
    assert "| dropout 0 | 3 | — | 35.0" in (experiments / "dropout/README.md").read_text()

    claims = (experiments / "README.md").read_text()
    assert "STALE" not in claims and claims.endswith("kept\n")
    assert "not run here" in claims  # LRN, overlap, towers: no runs in this fake tree
    assert rows["4. Dropout"]["seeds"] == 3
    assert rows["4. Dropout"]["verdict"] == "holds, judged."  # the README's own words


# ------------------------------------------------- notebook on a real tiny sweep


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory) -> Path:
    """Two very short real jobs (relu, tanh) with CSV logs, as a study sweep leaves them."""
    cwd = tmp_path_factory.mktemp("sweep")
    sweep = cwd / "sweep"
    run_entry_point(
        "train.py",
        "-m",
        "data=synthetic",
        "data.train_size=64",
        "data.val_size=32",
        "data.batch_size=16",
        "model.activation=relu,tanh",
        "trainer.max_epochs=2",
        "logger=csv",
        "callbacks=none",
        "seed=0",
        f"hydra.sweep.dir={sweep}",
        cwd=cwd,
    )
    return sweep


def test_report_reads_a_real_sweep(tiny_sweep: Path):
    runs, failed = report.load_runs(tiny_sweep)
    assert not failed
    assert sorted(r.config["model.activation"] for r in runs) == ["relu", "tanh"]
    for run in runs:
        assert run.history["epoch"].tolist() == [1, 2]
        assert run.history[["train_err", "val_err"]].notna().all().all()
        assert run.steps_per_epoch == 4  # 64 images / batch 16


def test_analysis_notebook_runs_headless_on_a_sweep(tiny_sweep: Path, tmp_path: Path, monkeypatch):
    source = REPO / "notebooks" / "analysis.ipynb"
    notebook = nbformat.read(source, as_version=4)
    # Outputs are stripped in git: the committed notebook is code only.
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")
    monkeypatch.setenv("ALEXNET_SWEEP", str(tiny_sweep))
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
    assert "model.activation" in text and "relu" in text and "tanh" in text
    assert (tmp_path / "sweep_curves.png").stat().st_size > 1000
