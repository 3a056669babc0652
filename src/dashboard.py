"""A W&B report for a sweep: python src/dashboard.py sweep_dir=DIR (or group=NAME)"""

import hydra
from omegaconf import DictConfig

from alexnet_lab.runs import run_task
from alexnet_lab.sweeps.report import publish


@hydra.main(version_base="1.3", config_path="../conf", config_name="dashboard")
def main(cfg: DictConfig) -> None:
    run_task(publish, cfg)


if __name__ == "__main__":
    main()
