#!/usr/bin/env bash
# Claim 1 (Figure 1): ReLU vs tanh in the four-layer net, each activation at its own
# fastest lr, under three inits (paper, PyTorch default, Kaiming) at both input scales
# (paper: mean-subtracted 0-255 pixels; unit: mean/std normalised). Then: make report.
#   1. lr grid, seed 0, GRID_EPOCHS epochs without validation, extended past whichever
#      edge is best until every arm's best lr has a worse one on each side;
#   2. every arm at its tuned lr, seeds $SEEDS, the preset's 12 epochs.
# Jobs with a completed record are skipped (experiments/lib.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
source experiments/lib.sh
PRESET=study_fig1
GRID_EPOCHS=${GRID_EPOCHS:-6}
analysis() { "$PY" -m alexnet_lab.analysis --experiments "$EXPERIMENTS" --scale "$STUDY_SCALE" "$@"; }

for _round in 1 2 3 4 5 6; do  # the starting grid, then at most five extensions
  jobs=$(analysis plan-grid)
  [ -z "$jobs" ] && break
  while read -r folder overrides; do
    # shellcheck disable=SC2086  # the overrides are meant to split
    SEEDS=0 run_arm relu_vs_tanh "$folder" $overrides \
      trainer.max_epochs="$GRID_EPOCHS" +trainer.limit_val_batches=0
  done <<< "$jobs"
done
analysis plan-tuned | while read -r folder overrides; do
  # shellcheck disable=SC2086
  run_arm relu_vs_tanh "$folder" $overrides
done
finish
