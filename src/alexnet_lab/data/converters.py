"""Public datasets converted once into ImageNet-style PNG trees, plus per-class subsets.

Fashion-MNIST comes from the Debian package `dataset-fashion-mnist` (IDX files
in /usr/share/datasets/fashion-mnist, no network) when present, otherwise from
torchvision's downloader; CIFAR-10 from torchvision's downloader. Either way
the result is root/{train,val}/<class>/NNNNN.png, so studies on them go through
exactly the folder pipeline an ImageNet run uses.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from alexnet_lab.data.builtin import write_image_folder
from alexnet_lab.data.datamodule import ImageFolderDataModule
from alexnet_lab.data.transforms import EvalTransform
from alexnet_lab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "t-shirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
]
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
# IDX type codes (LeCun's MNIST format); the Fashion-MNIST files use only uint8.
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into an array of its stored shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number).")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    count = int(np.prod(shape))
    if len(raw) - offset != count * dtype.itemsize:
        raise DataError(f"{path} is truncated: header says {shape}, file is {len(raw)} bytes.")
    # A copy: frombuffer views are read-only, which torch.from_numpy warns about.
    return np.frombuffer(raw, dtype, count, offset).reshape(shape).copy()


def _idx_pair(source: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    def find(stem: str) -> Path:
        for name in (f"{stem}.gz", stem):
            if (source / name).is_file():
                return source / name
        raise DataError(f"{source} has no {stem}[.gz].")

    images = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    if len(images) != len(labels):
        raise DataError(f"{source}: {len(images)} {prefix} images but {len(labels)} labels.")
    return images, labels


def fashion_mnist(root: str | Path, source: str | Path | None = None) -> None:
    """Write Fashion-MNIST (60,000 train / 10,000 test as val) under root, once.

    source: a folder with the four IDX files; default: the Debian package's
    folder if it exists, else torchvision downloads them next to root.
    """
    root = Path(root)
    if (root / "train").is_dir():
        return
    source = Path(source) if source else DEBIAN_FASHION_MNIST
    if not source.is_dir():
        source = _torchvision_download("FashionMNIST", root.parent / "downloads")
    log.info("Converting Fashion-MNIST from %s into %s (once)", source, root)
    splits = {"train": _idx_pair(source, "train"), "val": _idx_pair(source, "t10k")}
    write_image_folder(root, splits, FASHION_MNIST_CLASSES)


def cifar10(root: str | Path, download_dir: str | Path | None = None) -> None:
    """Write CIFAR-10 (50,000 train / 10,000 test as val) under root, once (needs internet)."""
    root = Path(root)
    if (root / "train").is_dir():
        return
    from torchvision.datasets import CIFAR10

    download_dir = Path(download_dir) if download_dir else root.parent / "downloads"
    log.info("Downloading CIFAR-10 into %s and converting it into %s (once)", download_dir, root)
    splits = {}
    for split, is_train in (("train", True), ("val", False)):
        ds = CIFAR10(str(download_dir), train=is_train, download=True)
        splits[split] = (np.asarray(ds.data), np.asarray(ds.targets))
    write_image_folder(root, splits, CIFAR10_CLASSES)


def _torchvision_download(name: str, download_dir: Path) -> Path:
    """Fetch an MNIST-style dataset with torchvision; returns the folder of its IDX files."""
    import torchvision.datasets

    dataset_cls = getattr(torchvision.datasets, name)
    log.info("%s not found locally; downloading with torchvision into %s", name, download_dir)
    dataset_cls(str(download_dir), train=True, download=True)
    dataset_cls(str(download_dir), train=False, download=True)
    return download_dir / name / "raw"


def first_per_class(samples: list[tuple[str, int]], per_class: int | None) -> list[tuple]:
    """The first `per_class` samples of each class (file order), so subsets are nested."""
    if per_class is None:
        return samples
    if per_class < 1:
        raise ConfigError(f"per-class subset size {per_class}: use a positive number or null.")
    taken: dict[int, int] = {}
    kept = []
    for path, label in samples:
        if taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            kept.append((path, label))
    return kept


def split_holdout(
    samples: list[tuple[str, int]], train_per_class: int | None, holdout_per_class: int
) -> tuple[list[tuple], list[tuple]]:
    """(training samples, held-out samples): the last `holdout_per_class` images of each
    class are held out, the training subset is the first `train_per_class` of the rest,
    so the two never share an image and both stay nested as the sizes grow."""
    if holdout_per_class < 1:
        raise ConfigError(
            f"data.holdout_per_class={holdout_per_class}: use a positive number, or null for "
            f"no held-out slice."
        )
    by_class: dict[int, list[tuple]] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    train, holdout = [], []
    for label, members in by_class.items():
        wanted = holdout_per_class + (train_per_class or 1)
        if len(members) < wanted:
            raise ConfigError(
                f"Class {label} has {len(members)} training images: too few for "
                f"data.holdout_per_class={holdout_per_class} held out plus "
                f"data.train_per_class={train_per_class} to train on. Lower one of them."
            )
        holdout += members[-holdout_per_class:]
        train += members[:-holdout_per_class]
    return first_per_class(train, train_per_class), holdout


class SubsetFolderDataModule(ImageFolderDataModule):
    """An image-folder tree of which only the first N images per class are used.

    CPU studies train on class-balanced subsets (data.train_per_class /
    data.val_per_class) of one converted tree; null uses every image.

    holdout_per_class: the last N training images of each class, never trained on,
    scored every epoch as a second validation set (logged as holdout/*). Studies pick a
    "best epoch" on it, never on the val split whose numbers they report.
    shuffle_seed: the training order's own RNG, so runs with the same seed see the same
    batches whatever else (dropout, augmentation) draws from the global RNG.
    """

    def __init__(
        self,
        train_per_class: int | None = None,
        val_per_class: int | None = None,
        holdout_per_class: int | None = None,
        shuffle_seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.per_class = {"train": train_per_class, "val": val_per_class}
        self.holdout_per_class = holdout_per_class
        self.shuffle_seed = shuffle_seed
        self.holdout_set: Dataset | None = None

    def _split(self, split: str, transform) -> Dataset:
        dataset = super()._split(split, transform)
        if split == "train" and self.holdout_per_class is not None:
            dataset.samples, _ = split_holdout(
                dataset.samples, self.per_class["train"], self.holdout_per_class
            )
        else:
            dataset.samples = first_per_class(dataset.samples, self.per_class.get(split))
        return dataset

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.holdout_per_class is not None and self.holdout_set is None:
            eval_transform = EvalTransform(self.resize_size, self.crop_size, self.ten_crop)
            holdout = super()._split("train", eval_transform)
            _, holdout.samples = split_holdout(
                holdout.samples, self.per_class["train"], self.holdout_per_class
            )
            self.holdout_set = holdout

    @property
    def val_loader_names(self) -> list[str]:
        """Metric prefix of each validation dataloader, in order (the module logs with it)."""
        return ["val", "holdout"] if self.holdout_per_class is not None else ["val"]

    def train_dataloader(self) -> DataLoader:
        loader = super().train_dataloader()
        if self.shuffle_seed is None:
            return loader
        generator = torch.Generator().manual_seed(int(self.shuffle_seed))
        return DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            shuffle=True,
            generator=generator,
            num_workers=loader.num_workers,
            pin_memory=loader.pin_memory,
            persistent_workers=loader.persistent_workers,
            collate_fn=loader.collate_fn,
        )

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        val = super().val_dataloader()
        if self.holdout_set is None:
            return val
        return [val, self._loader(self.holdout_set, shuffle=False)]

    def test_dataloader(self) -> DataLoader:
        return super().val_dataloader()  # evaluation scores the val split only
