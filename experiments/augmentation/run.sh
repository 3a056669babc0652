#!/usr/bin/env bash
# Claim 5: crops+flips+PCA noise (reference: experiments/baseline) vs crops+flips only vs none.
# Run from anywhere; writes under experiments/augmentation/runs/ (git-ignored). Then: make report.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
PY=${PY:-.venv/bin/python}
EXPERIMENTS=${EXPERIMENTS:-experiments}
# One intra-op thread: on a few shared cores, two threads spin-wait and halve throughput.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=${WANDB_MODE:-disabled}
nice -n 10 $PY src/train.py -m experiment=study_small data.augment=false seed=0,1,2 \
  hydra.sweep.dir=$EXPERIMENTS/augmentation/runs/no_augment
nice -n 10 $PY src/train.py -m experiment=study_small data.pca_std=0 seed=0,1,2 \
  hydra.sweep.dir=$EXPERIMENTS/augmentation/runs/no_pca
