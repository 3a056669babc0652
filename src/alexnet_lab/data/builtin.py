"""The built-in dataset: a class-balanced slice of Fashion-MNIST shipped with the package.

3,000 training and 1,000 validation images (300 / 100 per class, the first of
each class in Fashion-MNIST's train and test files; MIT licence) live in one
compressed file, so a fresh clone trains without a download. On first use they
are written out as an ImageNet-style PNG tree, so the default run exercises
exactly the folder pipeline a user's ImageNet run goes through.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torchvision.io import write_png

from alexnet_lab.errors import DataError

ASSET = "fashion_mnist_mini.npz"


def write_image_folder(root: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], classes):
    """Write {split: (images NxHxW[xC] uint8, labels N)} as root/split/class/NNNNN.png, atomically.

    The tree is built in a temporary sibling folder and renamed into place, so a
    run killed half-way (or a second rank doing the same) never leaves a partial tree.
    """
    root = Path(root)
    if (root / "train").is_dir():
        return
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        for split, (images, labels) in splits.items():
            for name in classes:
                (staging / split / name).mkdir(parents=True)
            for i, (image, label) in enumerate(zip(images, labels, strict=False)):
                tensor = torch.from_numpy(np.ascontiguousarray(image))
                tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
                write_png(tensor, str(staging / split / classes[int(label)] / f"{i:05d}.png"))
        try:
            staging.rename(root)
        except OSError:
            if not (root / "train").is_dir():  # lost a race only if someone else won it
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fashion_mnist_mini(root: str | Path, home: str | Path) -> None:
    """Write the built-in tree at `home`, its own place under paths.data_dir, and nowhere
    else: a data.root pointing elsewhere is the user's folder, never written into."""
    if Path(root).expanduser().resolve() != Path(home).expanduser().resolve():
        raise DataError(
            f"data.root={root} was given with the built-in data config (data=fashion_mnist_mini, "
            f"which lives at {home}). To train on your own folder add data=folder (or "
            f"data=imagenet): python src/train.py data=folder data.root={root}"
        )
    with resources.files("alexnet_lab.assets").joinpath(ASSET).open("rb") as f:
        data = np.load(f)
        splits = {
            "train": (data["train_images"], data["train_labels"]),
            "val": (data["val_images"], data["val_labels"]),
        }
        classes = [str(c) for c in data["classes"]]
    write_image_folder(Path(root), splits, classes)
