#!/usr/bin/env bash
# Claim 6: two towers (groups=2) vs one tower of the same widths (reference: experiments/baseline).
# Run from anywhere; writes under experiments/two_towers/runs/ (git-ignored). Then: make report.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
PY=${PY:-.venv/bin/python}
EXPERIMENTS=${EXPERIMENTS:-experiments}
# One intra-op thread: on a few shared cores, two threads spin-wait and halve throughput.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=${WANDB_MODE:-disabled}
nice -n 10 $PY src/train.py -m experiment=study_small model.groups=1 seed=0,1,2 \
  hydra.sweep.dir=$EXPERIMENTS/two_towers/runs/one_tower
