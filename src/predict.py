"""Classify images: python src/predict.py ckpt_path=PATH 'images=[a.jpg,photos/]' [output=json]"""

import hydra
from omegaconf import DictConfig

from alexnet_lab.inference.predict import predict
from alexnet_lab.runs import run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    run_task(predict, cfg)


if __name__ == "__main__":
    main()
