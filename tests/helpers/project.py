"""What the tests share besides fixtures: the repository's paths, a tiny image folder,
composed configs, and entry points run as a user would."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torchvision.io import encode_jpeg, write_file

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"  # on PYTHONPATH for runs that load helpers.* (probe callbacks)


CONF = REPO / "conf"


SRC = REPO / "src"


def make_image_folder(
    root: Path,
    classes=("n01440764", "n01443537", "n01484850"),
    per_class: int = 6,
    size: tuple[int, int] = (30, 40),
    splits=("train", "val"),
    ext: str = ".JPEG",
) -> Path:
    """An ImageNet-style tree of small JPEGs. Class i is tinted towards colour i, so a
    model can learn it; each image also has noise so no two are alike."""
    g = torch.Generator().manual_seed(0)
    for split in splits:
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                image = torch.randint(0, 120, (3, *size), generator=g, dtype=torch.uint8)
                image[index % 3] += 120
                write_file(str(folder / f"{name}_{k:04d}{ext}"), encode_jpeg(image, quality=90))
    return root


def folder_overrides(root: Path, *extra: str, batch_size: int = 8, epochs: int = 1) -> list[str]:
    """A small CPU training run on an image folder: CSV logs, no worker processes."""
    return [
        "data=folder",
        f"data.root={root}",
        f"data.batch_size={batch_size}",
        "data.num_workers=0",
        f"trainer.max_epochs={epochs}",
        "logger=csv",
        *extra,
    ]


def compose_config(
    overrides: list[str], output_dir: Path, config_name: str = "train"
) -> DictConfig:
    """Compose a config as `python src/<config_name>.py overrides...` would, with
    the Hydra runtime set so `${hydra:...}` interpolations resolve."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def entry_point_env(
    cwd: Path, pythonpath: Path | None = None, wandb_mode: str | None = "offline"
) -> dict[str, str]:
    """The environment an entry point runs in under test: outputs/ and data/ in `cwd`;
    `pythonpath`: a folder of probe modules the run imports (tests/); `wandb_mode`: the
    child's WANDB_MODE (None: unset, as for a user who never set it)."""
    env = {**os.environ, "ALEXNET_LAB_ROOT": str(cwd)}
    env.pop("WANDB_MODE", None)
    if wandb_mode is not None:
        env["WANDB_MODE"] = wandb_mode
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")])
    return env


def start_entry_point(
    script: str, *args: str, cwd: Path, pythonpath: Path | None = None, **popen: Any
) -> subprocess.Popen:
    """Start `python src/<script> args...` in `cwd` without waiting, in its own process
    group (a kill takes W&B's helper too); output discarded unless `popen` says where."""
    options = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.Popen(
        [sys.executable, str(SRC / script), *args],
        cwd=cwd,
        env=entry_point_env(cwd, pythonpath),
        start_new_session=True,
        **(options | popen),
    )


def run_entry_point(
    script: str,
    *overrides: str,
    cwd: Path,
    timeout: int = 300,
    check: bool = True,
    pythonpath: Path | None = None,
    wandb_mode: str | None = "offline",
) -> subprocess.CompletedProcess:
    """Run `python src/<script> overrides...` in `cwd` and wait (see entry_point_env)."""
    result = subprocess.run(
        [sys.executable, str(SRC / script), *overrides],
        cwd=cwd,
        env=entry_point_env(cwd, pythonpath, wandb_mode),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(overrides)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
        )
    return result


def tree_digest(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder`: content hash and modification time; a link: its target
    (W&B links its service's own log, which other runs keep writing)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(folder))] = (os.readlink(p), 0)
        elif p.is_file():
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            out[str(p.relative_to(folder))] = (digest, p.stat().st_mtime_ns)
    return out


# Tiny synthetic jobs: what is tested is the bookkeeping, not the learning.
TINY = [
    "data=synthetic",
    "data.train_size=64",
    "data.val_size=32",
    "data.batch_size=16",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
]


def run_make(target: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`make -s <target>` in the repository with this venv's python, outputs under `cwd`."""
    return subprocess.run(
        ["make", "-s", target, f"PY={REPO / '.venv' / 'bin' / 'python'}"],
        cwd=REPO,
        env={**os.environ, "ALEXNET_LAB_ROOT": str(cwd)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
