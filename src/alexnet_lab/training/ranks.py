"""What each DDP rank must have of its own (a random stream) or agree on (the batch split)."""

from __future__ import annotations

import logging
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.environments import LightningEnvironment

log = logging.getLogger(__name__)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of `rank`'s random streams in a run of `seed`.

    Rank 0 keeps the run's own seed, so a one-process run draws exactly what it always
    drew (the committed single-device study results repeat). Other ranks get a 64-bit seed
    that numpy's SeedSequence mixes from (seed, rank): not `seed + rank`, with which
    seed s on rank 1 was seed s+1 on rank 0 and two seeds of a study shared their noise.
    """
    if rank == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, np.uint64)[0])


class SeedPerRank(L.Callback):
    """Reseed torch, numpy and random with `rank_seed(seed, global rank)` once the rank is
    known.

    `seed_everything` runs before the ranks exist, so every rank would draw the same
    dropout masks and PCA colour noise at every step: N ranks, one stream. Reseeding
    here (as timm does) gives each rank its own stream, reproducible for a given seed
    and world size. The model is built before this, so its initialisation is the same on
    every rank (DDP also broadcasts rank 0's weights). PL_GLOBAL_SEED is left alone: the
    training DistributedSampler seeds its shuffle from it, and that permutation must be
    the same on every rank for the ranks' shards to be disjoint.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        seed = rank_seed(self.seed, trainer.global_rank)
        torch.manual_seed(seed)  # CPU and every CUDA device
        np.random.seed(seed % 2**32)  # numpy's global generator takes 32 bits
        random.seed(seed)
        log.debug("Rank %d: random streams seeded with %d", trainer.global_rank, seed)


def world_size(trainer: L.Trainer) -> int:
    """How many processes train together.

    Ranks started by torchrun or srun: the launcher's world size (Lightning checks at
    launch that trainer.devices x trainer.num_nodes matches it). Otherwise the devices
    Lightning resolved (a count, a list, auto) times the nodes.
    """
    env = getattr(trainer.strategy, "cluster_environment", None)
    if (
        env is not None
        and env.creates_processes_externally
        # Our own launcher's children: world size is set only during setup.
        and not isinstance(env, LightningEnvironment)
    ):
        return int(env.world_size())
    return trainer.num_devices * trainer.num_nodes


def batch_split(datamodule: Any, trainer: L.Trainer) -> dict[str, int]:
    """The batch per device and per optimizer step this run uses, logged at start (a
    ConfigError now, before training, if the global batch does not split evenly)."""
    processes = world_size(trainer)
    per_device = datamodule.per_device_batch_size(processes)
    accumulate = int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
    step = per_device * processes * accumulate
    log.info(
        "Batch: %d images per device x %d devices%s = %d images per optimizer step",
        per_device,
        processes,
        f" x {accumulate} accumulated batches" if accumulate > 1 else "",
        step,
    )
    return {
        "data/batch_size_per_device": per_device,
        "data/world_size": processes,
        "data/global_batch_size": step,
    }
