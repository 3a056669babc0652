#!/usr/bin/env bash
# Claim 1 (Figure 1): ReLU vs tanh in the four-layer net, each activation at its own
# fastest lr, under three inits (paper, PyTorch default, Kaiming) at both input scales
# (paper: mean-subtracted 0-255 pixels; unit: mean/std normalised). Then: make report.
#   1. lr grid, seed 0, GRID_EPOCHS epochs without validation, extended past whichever
#      edge is best until every arm's best lr has a worse one on each side;
#   2. every arm at its tuned lr, seeds $SEEDS, the preset's 12 epochs.
#   run.sh continued: the tuned arms named in CONTINUED (default: the one whose every seed
#   was censored at 10% in 12 epochs while the other activation reached it) rerun with the
#   same overrides and constant lr to CONTINUED_EPOCHS (24), into runs-continued/ (CPU
#   protocol only). The runs keep no checkpoints, so they train from the start: their
#   first 12 epochs repeat the committed runs' (make report checks that they do).
# Jobs with a completed record are skipped (experiments/lib.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
source experiments/lib.sh
PRESET=study_fig1
GRID_EPOCHS=${GRID_EPOCHS:-6}
analysis() { "$PY" -m alexnet_lab.analysis --experiments "$EXPERIMENTS" --scale "$STUDY_SCALE" "$@"; }

if [ "${1:-}" = continued ]; then
  if [ "$STUDY_SCALE" != cpu ]; then
    echo "run.sh continued extends the CPU protocol's runs: use STUDY_SCALE=cpu." >&2
    exit 2
  fi
  CONTINUED=${CONTINUED:-tuned/default-init_paper-scale/tanh/lr0.01}
  for arm in $CONTINUED; do
    record=$EXPERIMENTS/relu_vs_tanh/runs/$arm/seed_0/.hydra/overrides.yaml
    # The arm's own overrides, less the preset and the seed (run_arm sets both).
    overrides=$(sed -n 's/^- //p' "$record" | grep -v '^experiment=\|^seed=')
    RUNS_NAME=runs-continued
    # shellcheck disable=SC2086  # the overrides are meant to split
    run_arm relu_vs_tanh "$arm" $overrides trainer.max_epochs="${CONTINUED_EPOCHS:-24}"
  done
  finish
fi

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
