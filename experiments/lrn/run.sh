#!/usr/bin/env bash
# Claim 2: local response normalisation after conv1/conv2 vs none (reference: experiments/baseline).
# Run from anywhere; writes under experiments/lrn/runs/ (git-ignored). Then: make report.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
PY=${PY:-.venv/bin/python}
EXPERIMENTS=${EXPERIMENTS:-experiments}
# One intra-op thread: on a few shared cores, two threads spin-wait and halve throughput.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=${WANDB_MODE:-disabled}
nice -n 10 $PY src/train.py -m experiment=study_small model.lrn=false seed=0,1,2 \
  hydra.sweep.dir=$EXPERIMENTS/lrn/runs/no_lrn
