from alexnet_lab.data.datamodule import (
    AlexNetDataModule,
    ImageFolderDataModule,
    SyntheticDataModule,
)

__all__ = ["AlexNetDataModule", "ImageFolderDataModule", "SyntheticDataModule"]
