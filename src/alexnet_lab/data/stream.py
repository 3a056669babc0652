"""data=stream: train from LitData shards (`prepare format=litdata`), in a local folder or
an object store (s3://, gs://, r2://), with litdata's StreamingDataset/StreamingDataLoader.

Everything after reading a record is the folder pipeline's: the same decoder on the same
JPEG bytes, the same uint8 TrainTransform/EvalTransform in the workers (or on the GPU
with data.decode_device=cuda), the same on-device normalisation and PCA noise
(AlexNetDataModule.on_after_batch_transfer), the same class order (DST/classes.json
lists the sorted class folders). What litdata adds:

- sharding across ranks and nodes: each rank streams its own chunks, in whole batches.
  Training drops the images that do not fill one more batch on every rank (fewer than
  one global batch per epoch), so all ranks run the same number of steps; validation
  drops none: the last rank takes the remainder (evaluation has no per-step collective).
- the loader's position is saved in every checkpoint (Lightning stores the state of a
  stateful loader), so resume=RUN_DIR continues mid-epoch with the images not yet seen.
- shuffling is by chunk and within a window of images of a chunk, not one permutation
  of the whole split: the price of reading large sequential chunks.

Credentials for object storage come from the environment only (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL for S3-compatible servers, ...): no config key
holds them, so no config, log or checkpoint can.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torchvision.io import ImageReadMode, decode_image

from alexnet_lab.data.datamodule import AlexNetDataModule
from alexnet_lab.data.gpu_decode import collate_encoded
from alexnet_lab.data.shards import check_root_url, import_litdata, is_url, join, read_manifest
from alexnet_lab.data.transforms import EvalTransform, TrainTransform, collate_images
from alexnet_lab.errors import ConfigError, DataError


class ShardSample:
    """A shard record -> (uint8 image after `transform`, class index); with transform=None
    the JPEG bytes as a 1-D uint8 tensor (decoded on the GPU by decode_batch)."""

    def __init__(self, transform=None):
        self.transform = transform

    def __call__(self, record: dict[str, Any]) -> tuple[torch.Tensor, int]:
        data = torch.frombuffer(bytearray(record["image"]), dtype=torch.uint8)
        if self.transform is None:
            return data, record["label"]
        return self.transform(decode_image(data, mode=ImageReadMode.RGB)), record["label"]


def streaming_dataset(root: str, split: str, sample: ShardSample, shuffle: bool, **kwargs):
    litdata = import_litdata()
    return litdata.StreamingDataset(join(root, split), shuffle=shuffle, transform=sample, **kwargs)


class StreamingDataModule(AlexNetDataModule):
    """ROOT/{train,val}/ LitData shards and ROOT/classes.json (see alexnet_lab.data.shards).

    shuffle_seed: the training order's seed (litdata reshuffles every epoch from it).
    cache_dir / max_cache_size: where and how much of an object store's chunks are kept
    on local disk (null: litdata's defaults); unused for a local folder.
    """

    sample_class = ShardSample  # tests/helpers/stream_probe.py swaps in one that keeps sample ids

    def __init__(
        self,
        root: str,
        shuffle_seed: int = 0,
        cache_dir: str | None = None,
        max_cache_size: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if root in (None, "", "???"):
            raise ConfigError(
                "data.root is not set. Pass data.root=OUT, the output of `python src/prepare.py "
                "src=RAW dst=OUT format=litdata`, or its object-store URL (s3://bucket/prefix)."
            )
        if self.persistent_workers:
            # Persistent workers keep the dataset copy of the first epoch: litdata hands
            # each epoch's shuffle and a resumed position to fresh workers only.
            raise ConfigError(
                "data=stream with data.persistent_workers=true: litdata passes each epoch's "
                "order to freshly started workers, so persistent ones would repeat the first "
                "epoch's order. Set data.persistent_workers=false (conf/data/stream.yaml does)."
            )
        check_root_url(str(root))
        if not is_url(root):
            # litdata logs its object-store cache budget from every worker, every epoch; a
            # local folder is read in place and has no cache.
            logging.getLogger("litdata.utilities.format").setLevel(logging.WARNING)
        self.root = str(root)
        self.shuffle_seed = int(shuffle_seed)
        self.stream_options = {
            key: value
            for key, value in (("cache_dir", cache_dir), ("max_cache_size", max_cache_size))
            if value is not None
        }
        self._manifest: dict[str, Any] | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            self._manifest = read_manifest(self.root)
        return self._manifest

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    def images_in(self, split: str) -> int:
        """The split's size over all ranks (len() of a StreamingDataset is one rank's)."""
        return int(self.manifest["images"][split])

    def check_split_sizes(self, splits: tuple[str, ...]) -> None:
        """litdata gives each rank whole batches: a split smaller than one batch per rank
        leaves a rank with nothing, and Lightning then stops that rank alone. Every rank
        computes the same answer from the manifest, so all stop with this error instead."""
        ranks = self.trainer.world_size if self.trainer is not None else 1
        batch = self.per_device_batch_size()
        for split in splits:
            images = self.manifest["images"][split]
            if ranks > 1 and images < batch * ranks:
                raise DataError(
                    f"{join(self.root, split)} has {images} images, fewer than one batch of "
                    f"{batch} for each of the {ranks} ranks: some rank would get none. Use a "
                    f"smaller data.batch_size or fewer devices."
                )

    def setup(self, stage: str | None = None) -> None:
        self.check_split_sizes(("train", "val") if stage in (None, "fit") else ("val",))
        train_transform = TrainTransform(self.resize_size, self.crop_size, self.augment)
        eval_transform = EvalTransform(self.resize_size, self.crop_size, self.ten_crop)
        gpu = self.decode_device == "cuda"
        if gpu:  # workers only read records; decode_batch runs these on the GPU
            self.device_transforms = (train_transform, eval_transform)
        if stage in (None, "fit") and self.train_set is None:
            sample = self.sample_class(None if gpu else train_transform)
            self.train_set = streaming_dataset(
                self.root, "train", sample, True, seed=self.shuffle_seed, **self.stream_options
            )
        if self.val_set is None:
            sample = self.sample_class(None if gpu else eval_transform)
            # drop_last=False: every validation image counts once, on one rank.
            self.val_set = streaming_dataset(
                self.root, "val", sample, shuffle=False, drop_last=False, **self.stream_options
            )

    def _loader(self, dataset, shuffle: bool):
        litdata = import_litdata()
        return litdata.StreamingDataLoader(
            dataset,
            batch_size=self.per_device_batch_size(),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=collate_encoded if self.device_transforms else collate_images,
        )
