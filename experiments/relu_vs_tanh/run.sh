#!/usr/bin/env bash
# Claim 1 (Figure 1): ReLU vs tanh, lr tuned per activation and init, no regularisation.
# Run from anywhere; writes under experiments/relu_vs_tanh/runs/ (git-ignored). Then: make report.
# Arms already finished are skipped, so a cut-short run can be restarted.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
PY=${PY:-.venv/bin/python}
EXPERIMENTS=${EXPERIMENTS:-experiments}
# One intra-op thread: on a few shared cores, two threads spin-wait and halve throughput.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=${WANDB_MODE:-disabled}
RUNS=$EXPERIMENTS/relu_vs_tanh/runs
INITS=${INITS:-paper,default,kaiming}
GRID_DIR=${GRID_DIR:-$RUNS/grid}  # the report reads every runs/grid*/ folder
name() { echo "$1" | sed 's/model\.//g; s/optimizer\.//; s/ /_/g; s/=/-/g'; }

# 1. The lr grid with seed 0: activation x init x lr, 8 epochs.
if [ "${SKIP_GRID:-0}" != 1 ]; then
  nice -n 10 $PY src/train.py -m experiment=study_fig1 \
    model.activation=relu,tanh model.init=$INITS \
    optimizer.lr=0.01,0.03,0.1 seed=0 hydra.sweep.dir=$GRID_DIR
fi
[ "${SKIP_SEEDS:-0}" = 1 ] && exit 0
# 2. Seeds 1 and 2 at each arm's tuned lr (lowest mean training error with seed 0).
ARMS=$($PY -m alexnet_lab.report --experiments $EXPERIMENTS --best-lr)
echo "$ARMS" | while read -r arm; do
  out=$RUNS/seeds/$(name "$arm")
  [ -f $out/1/metrics.json ] && continue
  # shellcheck disable=SC2086  # the overrides are meant to split
  nice -n 10 $PY src/train.py -m experiment=study_fig1 $arm seed=1,2 \
    hydra.sweep.dir=$out < /dev/null
done
# 3. The default- and Kaiming-init arms three times longer (24 epochs, 384 steps), seeds
#    0-2, so the lower thresholds come within reach.
echo "$ARMS" | grep -E "init=(${LONG_INITS:-default|kaiming})" | while read -r arm; do
  out=$RUNS/long/$(name "$arm")
  [ -f $out/2/metrics.json ] && continue
  # shellcheck disable=SC2086
  nice -n 10 $PY src/train.py -m experiment=study_fig1 $arm seed=0,1,2 trainer.max_epochs=24 \
    hydra.sweep.dir=$out < /dev/null
done
