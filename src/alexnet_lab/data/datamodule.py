"""LightningDataModules: ImageNet-style folders and synthetic images.

Both yield uint8 batches; `on_after_batch_transfer` turns them into normalised
float on the training device (plus PCA colour noise while training).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from alexnet_lab.data.folders import (
    ImageFolderDataset,
    check_same_classes,
    check_split_dir,
    find_classes,
    list_images,
    union_across_ranks,
)
from alexnet_lab.data.gpu_decode import (
    EncodedImages,
    check_decode_device,
    collate_encoded,
    decode_batch,
)
from alexnet_lab.data.sharding import batch_per_device, eval_sampler
from alexnet_lab.data.transforms import (
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchNormalizer,
    EvalTransform,
    TrainTransform,
    collate_images,
)
from alexnet_lab.errors import ConfigError, DataError
from alexnet_lab.resolvers import INPUT_SCALES, PAPER_STD


class AlexNetDataModule(L.LightningDataModule):
    """Shared loader settings and the on-device normalisation step."""

    def __init__(
        self,
        crop_size: int = 224,
        resize_size: int | None = None,
        batch_size: int | None = 128,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        augment: bool = True,
        pca_std: float = 0.1,
        ten_crop: bool = False,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        eigval: Sequence[float] = IMAGENET_EIGVAL,
        eigvec: Sequence[Sequence[float]] = IMAGENET_EIGVEC,
        decode_device: str = "cpu",
        input_scale: str = "unit",
        global_batch_size: int | None = None,
    ):
        super().__init__()
        self.input_scale = check_input_scale(input_scale, std)
        # cuda: workers only read files; decode, resize, crop, flip run on the GPU.
        self.decode_device = check_decode_device(decode_device)
        self.device_transforms: tuple | None = None  # (train, eval), set when decoding on GPU
        if resize_size is None:  # the paper's 256 / 224, at any scale
            resize_size = round(crop_size * 256 / 224)
        for key, size in (("batch_size", batch_size), ("global_batch_size", global_batch_size)):
            if size is not None and size < 1:
                raise ConfigError(f"data.{key}={size}: use a positive batch size.")
        if crop_size > resize_size:
            raise ConfigError(
                f"data.crop_size={crop_size} is larger than data.resize_size={resize_size}: "
                f"crops are taken from the resized square, so make resize_size >= crop_size."
            )
        self.crop_size = crop_size
        self.resize_size = resize_size
        # data.batch_size is per device; data.global_batch_size, when set, is split over
        # the devices once the world size is known (see batch_per_device).
        self.batch_size = batch_size
        self.global_batch_size = global_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.augment = augment
        self.ten_crop = ten_crop
        # PCA noise is a training augmentation: data.augment=false turns it off too (for a
        # new run check_train_config refuses data.pca_std>0 with it: never dropped silently).
        self.normalizer = BatchNormalizer(mean, std, pca_std if augment else 0.0, eigval, eigvec)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    @property
    def classes(self) -> list[str]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def per_device_batch_size(self, world_size: int | None = None) -> int:
        """Images per device per step, for `world_size` processes (default: the trainer's)."""
        if world_size is None:
            world_size = self.trainer.world_size if self.trainer is not None else 1
        return batch_per_device(self.batch_size, self.global_batch_size, world_size)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        # Validation/test under DDP: each image on exactly one rank (no padding repeats).
        sampler = None if shuffle else eval_sampler(dataset, self.trainer)
        return DataLoader(
            dataset,
            batch_size=self.per_device_batch_size(),
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=collate_encoded if self.device_transforms else collate_images,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def skipped_files(self) -> list[str]:
        """Unreadable image files met so far, on every DDP rank (a collective call)."""
        datasets = [d for d in (self.train_set, self.val_set) if hasattr(d, "unreadable_files")]
        local = [path for dataset in datasets for path in dataset.unreadable_files()]
        return union_across_ranks(local)

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if self.device_transforms is None:
            return batch
        encoded, targets = batch
        training = self.trainer is not None and self.trainer.training
        device = self.trainer.strategy.root_device if self.trainer is not None else "cuda"
        transform = self.device_transforms[0 if training else 1]
        return decode_batch(encoded, device, transform), targets

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, targets = batch
        training = self.trainer is not None and self.trainer.training
        return self.normalizer(images, pca_noise=training), targets


def check_input_scale(input_scale: str, std: Sequence[float]) -> str:
    """data.std resolves from data.input_scale (conf/data/folder.yaml); a hand-set data.std
    that contradicts the scale would make the switch a silent no-op."""
    if input_scale not in INPUT_SCALES:
        raise ConfigError(
            f"data.input_scale={input_scale}: use one of {', '.join(INPUT_SCALES)} "
            f"(paper: mean-subtracted 0-255 pixels, as the paper trained)."
        )
    paper_std = all(abs(s - PAPER_STD) < 1e-9 for s in std)
    if (input_scale == "paper") != paper_std:
        raise ConfigError(
            f"data.input_scale={input_scale} but data.std={list(std)}: the scale sets the std "
            f"(1/255 per channel at paper scale, the dataset's std at unit scale). Drop the "
            f"data.std override and choose the scale with data.input_scale=paper|unit."
        )
    return input_scale


class ImageFolderDataModule(AlexNetDataModule):
    """root/train/<class>/* and root/val/<class>/* with the paper's preprocessing.

    `prepare`, if given, is called with the root in `prepare_data` to create the
    tree (the built-in dataset and the converters use it); it must skip work
    that is already done.
    """

    def __init__(self, root: str, prepare: Callable[[str], None] | None = None, **kwargs):
        super().__init__(**kwargs)
        if root in (None, "", "???"):
            raise ConfigError(
                "data.root is not set. Pass data.root=DIR, where DIR holds train/<class>/ and "
                "val/<class>/ image folders (ImageNet layout)."
            )
        self.root = Path(root).expanduser()
        self.prepare = prepare
        self._classes: list[str] | None = None

    def prepare_data(self) -> None:
        if self.prepare is not None:
            self.prepare(str(self.root))

    @property
    def classes(self) -> list[str]:
        if self._classes is None:
            train_classes = find_classes(check_split_dir(self.root, "train"))
            val_classes = find_classes(check_split_dir(self.root, "val"))
            check_same_classes(train_classes, val_classes, self.root)
            if not train_classes:
                raise DataError(
                    f"{self.root}/train has no class folders. Put each class's images in "
                    f"its own sub-folder, e.g. {self.root}/train/n01440764/*.JPEG."
                )
            self._classes = train_classes
        return self._classes

    def _split(self, split: str, transform) -> ImageFolderDataset:
        samples = list_images(self.root / split, self.classes)
        if not samples:
            raise DataError(
                f"{self.root}/{split} has no images (looked for .jpg, .jpeg, .png, .bmp, .gif, "
                f".webp in its class folders). Check data.root."
            )
        if self.decode_device == "cuda":
            return EncodedImages(samples)  # the transform runs after decode_batch
        return ImageFolderDataset(samples, transform)

    def setup(self, stage: str | None = None) -> None:
        eval_transform = EvalTransform(self.resize_size, self.crop_size, self.ten_crop)
        train_transform = TrainTransform(self.resize_size, self.crop_size, self.augment)
        if self.decode_device == "cuda":
            self.device_transforms = (train_transform, eval_transform)
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._split("train", train_transform)
        if self.val_set is None:
            self.val_set = self._split("val", eval_transform)


class SyntheticImages(Dataset):
    """Random uint8 images; sample i is the same every epoch (seeded by its index)."""

    def __init__(self, length: int, size: int, num_classes: int, transform, seed: int = 0):
        self.length, self.size, self.num_classes, self.seed = length, size, num_classes, seed
        self.transform = transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        g = torch.Generator().manual_seed(self.seed + index)
        image = torch.randint(0, 256, (3, self.size, self.size), dtype=torch.uint8, generator=g)
        return self.transform(image), int(torch.randint(0, self.num_classes, (), generator=g))


class SyntheticDataModule(AlexNetDataModule):
    """No files: random images through the same transforms (smoke runs, benchmarks)."""

    def __init__(self, num_classes: int = 10, train_size: int = 256, val_size: int = 64, **kw):
        super().__init__(**kw)
        self._num_classes = num_classes
        self.train_size, self.val_size = train_size, val_size

    @property
    def classes(self) -> list[str]:
        return [f"class_{i:04d}" for i in range(self._num_classes)]

    def setup(self, stage: str | None = None) -> None:
        size, classes = self.resize_size, self._num_classes
        train_transform = TrainTransform(self.resize_size, self.crop_size, self.augment)
        eval_transform = EvalTransform(self.resize_size, self.crop_size, self.ten_crop)
        self.train_set = SyntheticImages(self.train_size, size, classes, train_transform)
        self.val_set = SyntheticImages(self.val_size, size, classes, eval_transform, seed=1 << 20)
