"""The paper's offline step: python src/prepare.py src=RAW dst=OUT [mode=..] [quality=..]"""

import hydra
from omegaconf import DictConfig

from alexnet_lab.data.prepare import prepare
from alexnet_lab.runs import run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="prepare")
def main(cfg: DictConfig) -> None:
    run_task(prepare, cfg)


if __name__ == "__main__":
    main()
