"""What runs inside `Trainer.fit`: the LightningModule, its callbacks, checkpoints, stop
signals and DDP."""
