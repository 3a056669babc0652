"""Reading an ImageNet-style tree: root/{train,val}/<class>/<image>."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from alexnet_lab.data.transforms import UnreadableImageError, read_image_rgb
from alexnet_lab.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})


def find_classes(split_dir: Path) -> list[str]:
    """Class folder names in a stable (sorted) order; hidden folders are not classes."""
    return sorted(
        e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith(".")
    )


def list_images(split_dir: Path, classes: list[str]) -> list[tuple[str, int]]:
    """(path, class index) for every image file; other files (.DS_Store, notes) are ignored."""
    samples = []
    for index, name in enumerate(classes):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            continue
        for entry in sorted(os.scandir(class_dir), key=lambda e: e.name):
            if (
                entry.is_file()
                and not entry.name.startswith(".")
                and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
            ):
                samples.append((entry.path, index))
    return samples


def check_split_dir(root: Path, split: str) -> Path:
    split_dir = root / split
    if not root.is_dir():
        raise DataError(
            f"data.root={root} does not exist. Point data.root at a folder laid out as "
            f"ROOT/train/<class>/*.JPEG and ROOT/val/<class>/*.JPEG."
        )
    if not split_dir.is_dir():
        raise DataError(
            f"{split_dir} is missing. data.root must hold train/ and val/ folders, each with "
            f"one sub-folder of images per class (ImageNet layout)."
        )
    return split_dir


def check_same_classes(train_classes: list[str], val_classes: list[str], root: Path) -> None:
    only_train = sorted(set(train_classes) - set(val_classes))
    only_val = sorted(set(val_classes) - set(train_classes))
    if only_val:
        raise DataError(
            f"{root}/val has class folders that train/ lacks: {', '.join(only_val[:20])}. "
            f"A model cannot be scored on classes it never saw; move or delete those folders."
        )
    if only_train:
        raise DataError(
            f"{root}/train has class folders that val/ lacks: {', '.join(only_train[:20])}. "
            f"Give every class some validation images, or remove the class from train/."
        )


# A run of this many unreadable files in a row means the tree, not a file, is broken.
MAX_CONSECUTIVE_UNREADABLE = 64


class ImageFolderDataset(Dataset):
    """(uint8 image, class index) for each sample.

    One bad file must not end a long run, nor shrink a batch: a file that cannot
    be decoded is replaced by the next readable one (usually of the same class,
    as samples are sorted), named in one warning, and flagged in `unreadable`.
    The flags live in shared memory because DataLoader workers are separate
    processes: what they mark, the training process counts. Healthy samples pay
    nothing for this; the flags are only touched when a decode fails.
    """

    def __init__(self, samples: list[tuple[str, int]], transform):
        self.samples = samples
        self.transform = transform
        self.unreadable = torch.zeros(len(samples), dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        first_error = None
        for offset in range(min(len(self.samples), MAX_CONSECUTIVE_UNREADABLE)):
            i = (index + offset) % len(self.samples)
            path, target = self.samples[i]
            try:
                image = read_image_rgb(path)
            except UnreadableImageError as err:
                first_error = first_error or err
                if not self.unreadable[i]:
                    self.unreadable[i] = True
                    log.warning("Skipping unreadable image %s", err)
                continue
            return self.transform(image), target
        raise DataError(
            f"{MAX_CONSECUTIVE_UNREADABLE} image files in a row cannot be read, starting with "
            f"{first_error}. Check data.root: did a copy or download finish?"
        )

    def unreadable_files(self) -> list[str]:
        return [self.samples[i][0] for i in self.unreadable.nonzero().flatten().tolist()]


def union_across_ranks(paths: list[str]) -> list[str]:
    """The union of every DDP rank's list (a collective call); the list itself otherwise."""
    gathered = [paths]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered = [[]] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, paths)
    return sorted(set().union(*gathered))
