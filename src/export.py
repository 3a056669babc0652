"""Export a checkpoint: python src/export.py ckpt_path=PATH format=onnx|torchscript"""

import hydra
from omegaconf import DictConfig

from alexnet_lab.inference.export import export
from alexnet_lab.runs import run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    run_task(export, cfg)


if __name__ == "__main__":
    main()
