"""Tune hyper-parameters with Optuna, each trial a training run:
python src/tune.py [train.py overrides] tune.dir=DIR [tune.n_trials=N] [-m ablation=a,b]"""

import sys

import hydra
from omegaconf import DictConfig

from alexnet_lab.runs import folder_data_for_given_root, run_task
from alexnet_lab.tuning.study import tune


@hydra.main(version_base="1.3", config_path="../conf", config_name="tune")
def main(cfg: DictConfig) -> float | None:
    return run_task(tune, cfg).get("tune/best_value")


if __name__ == "__main__":
    sys.argv = folder_data_for_given_root(sys.argv)
    main()
