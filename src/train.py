"""Train AlexNet: python src/train.py [group=option ...] [key=value ...] [-m]"""

import sys

import hydra
from omegaconf import DictConfig

from alexnet_lab.runs import folder_data_for_given_root, run_task
from alexnet_lab.tasks import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # The return value is what a Hydra sweeper (e.g. Optuna) optimises.
    return run_task(train, cfg).get("val/acc_top1")


if __name__ == "__main__":
    sys.argv = folder_data_for_given_root(sys.argv)
    main()
