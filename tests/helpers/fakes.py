"""Fake records the analysis tests read: a sweep's job folders, a Fashion-MNIST source folder."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf


def fake_sweep(sweep: Path, jobs: list[tuple[list[str], dict | None]]) -> Path:
    """Job folders as Hydra and run_task leave them: overrides, config (seed), metrics."""
    for num, (overrides, metrics) in enumerate(jobs):
        job = sweep / str(num)
        (job / ".hydra").mkdir(parents=True)
        OmegaConf.save(overrides, job / ".hydra" / "overrides.yaml")
        seed = next((int(o.split("=")[1]) for o in overrides if o.startswith("seed=")), 42)
        OmegaConf.save({"seed": seed, "ablation_name": None}, job / ".hydra" / "config.yaml")
        if metrics is not None:
            (job / "metrics.json").write_text(json.dumps({"status": "completed", **metrics}))
    return sweep


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
