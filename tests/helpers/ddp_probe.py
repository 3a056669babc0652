"""A callback the DDP tests add to a run
(`+callbacks.rank_probe._target_=helpers.ddp_probe.RankProbe`, with tests/ on PYTHONPATH):
at the first training step each rank writes what it draws.

`probe_rank<R>.json` in the run folder holds the PCA colour shift the datamodule would
add to a fixed batch, a dropout mask, and the rank's share of the epoch's training
indices. The draws run under fork_rng, so training itself is not disturbed.
`train_losses_rank<R>.json` holds the rank's own training losses of the latest epoch, one
per batch, with the batch sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning.pytorch import Callback


class RankProbe(Callback):
    def __init__(self) -> None:
        self.losses: list[tuple[float, int]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.losses.append((float(outputs["loss"]), len(batch[1])))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        path = Path(trainer.default_root_dir) / f"train_losses_rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.losses))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch or batch_idx:
            return
        with torch.random.fork_rng(devices=[]):
            grey = torch.full((4, 3, 8, 8), 128, dtype=torch.uint8)
            clean = trainer.datamodule.normalizer(grey, pca_noise=False)
            noisy = trainer.datamodule.normalizer(grey, pca_noise=True)
            pca_shift = (noisy - clean)[:, :, 0, 0]  # the same shift at every pixel
            dropout_mask = torch.nn.functional.dropout(torch.ones(64), 0.5, training=True)
            # Under DDP a DistributedSampler, seeded by PL_GLOBAL_SEED and the epoch.
            train_indices = list(trainer.train_dataloader.sampler)
        record = {
            "pca_shift": pca_shift.tolist(),
            "dropout_mask": (dropout_mask > 0).int().tolist(),
            "train_indices": train_indices,
        }
        path = Path(trainer.default_root_dir) / f"probe_rank{trainer.global_rank}.json"
        path.write_text(json.dumps(record))
