"""How a split is divided between ranks: the batch each device takes, and a validation sampler
that counts each image once."""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import Dataset

from alexnet_lab.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def batch_per_device(batch_size: int | None, global_batch_size: int | None, world_size: int) -> int:
    """The batch each device loads. `data.global_batch_size` (all devices together, one
    optimizer step) is split evenly; otherwise `data.batch_size` is per device."""
    if global_batch_size is None:
        if batch_size is None:
            raise ConfigError(
                "data.batch_size and data.global_batch_size are both null: set "
                "data.batch_size (images per device) or data.global_batch_size (images per "
                "optimizer step, all devices together)."
            )
        return batch_size
    if global_batch_size % world_size:
        raise ConfigError(
            f"data.global_batch_size={global_batch_size} does not split evenly over "
            f"{world_size} devices (trainer.devices x trainer.num_nodes, or the launcher's "
            f"world size). Use a global batch that is a multiple of {world_size}, or a "
            f"device count that divides {global_batch_size}."
        )
    per_device = global_batch_size // world_size
    if batch_size is not None and batch_size != per_device:
        raise ConfigError(
            f"data.batch_size={batch_size} per device x {world_size} devices = "
            f"{batch_size * world_size} images per step, but data.global_batch_size="
            f"{global_batch_size}. Set one of them: data.batch_size=null to split the global "
            f"batch over the devices, or data.global_batch_size=null for a per-device batch."
        )
    return per_device


def eval_sampler(
    dataset: Dataset, trainer: L.Trainer | None
) -> UnrepeatedDistributedSampler | None:
    """Under DDP, a validation/test sampler that gives each image to exactly one rank.

    Lightning's DistributedSampler pads a split whose size does not divide by the world
    size with repeated images, which then count twice in the accuracy. This one does not
    pad: ranks may run one batch more or fewer, so evaluation must do no per-step
    collective (metrics are torchmetrics objects, synchronised once at epoch end).
    """
    kwargs = trainer.distributed_sampler_kwargs if trainer is not None else None
    if not kwargs or kwargs.get("num_replicas", 1) <= 1:
        return None  # one process: Lightning's sequential sampler
    if len(dataset) < kwargs["num_replicas"]:
        raise DataError(
            f"The validation split has {len(dataset)} images, fewer than the "
            f"{kwargs['num_replicas']} DDP ranks: every rank needs at least one. Use a larger "
            f"val/ split or fewer devices."
        )
    return UnrepeatedDistributedSampler(dataset, shuffle=False, **kwargs)
