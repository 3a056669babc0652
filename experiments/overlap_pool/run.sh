#!/usr/bin/env bash
# Claim 3: overlapping 3/2 max-pooling vs 2/2 (reference: experiments/baseline).
# Run from anywhere; writes under experiments/overlap_pool/runs/ (git-ignored). Then: make report.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
PY=${PY:-.venv/bin/python}
EXPERIMENTS=${EXPERIMENTS:-experiments}
# One intra-op thread: on a few shared cores, two threads spin-wait and halve throughput.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=${WANDB_MODE:-disabled}
nice -n 10 $PY src/train.py -m experiment=study_small model.overlap_pool=false seed=0,1,2 \
  hydra.sweep.dir=$EXPERIMENTS/overlap_pool/runs/no_overlap
