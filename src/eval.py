"""Evaluate a checkpoint: python src/eval.py ckpt_path=PATH [data.root=DIR]"""

import hydra
from omegaconf import DictConfig

from alexnet_lab.runs import run_task
from alexnet_lab.tasks import evaluate


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return run_task(evaluate, cfg).get("eval/acc_top1")


if __name__ == "__main__":
    main()
