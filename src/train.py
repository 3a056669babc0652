"""Train AlexNet: python src/train.py [group=option ...] [key=value ...] [-m]"""

import hydra
from omegaconf import DictConfig

from alexnet_lab.runs import run_task
from alexnet_lab.tasks import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # The return value is what a Hydra sweeper (e.g. Optuna) optimises.
    return run_task(train, cfg).get("val/acc_top1")


if __name__ == "__main__":
    main()
