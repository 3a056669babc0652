#!/usr/bin/env bash
# Claim 4: dropout 0.5 on fc6/fc7 vs none (reference arm: experiments/baseline).
# Run from anywhere; writes under experiments/dropout/runs/ (git-ignored). Then: make report.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
PY=${PY:-.venv/bin/python}
EXPERIMENTS=${EXPERIMENTS:-experiments}
# One intra-op thread: on a few shared cores, two threads spin-wait and halve throughput.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=${WANDB_MODE:-disabled}
nice -n 10 $PY src/train.py -m experiment=study_small model.dropout=0 seed=0,1,2 \
  hydra.sweep.dir=$EXPERIMENTS/dropout/runs/no_dropout
