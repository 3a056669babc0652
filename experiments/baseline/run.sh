#!/usr/bin/env bash
# The shared reference arm of claims 2-6: the small AlexNet with every paper switch on, 3 seeds.
# Run from anywhere; writes under experiments/baseline/runs/ (git-ignored). Then: make report.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
PY=${PY:-.venv/bin/python}
EXPERIMENTS=${EXPERIMENTS:-experiments}
# One intra-op thread: on a few shared cores, two threads spin-wait and halve throughput.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=${WANDB_MODE:-disabled}
nice -n 10 $PY src/train.py -m experiment=study_small seed=0,1,2 \
  hydra.sweep.dir=$EXPERIMENTS/baseline/runs
