#!/usr/bin/env bash
# Claim 1 (Figure 1): ReLU vs tanh, lr tuned per activation and init, no regularisation.
# Run from anywhere; writes under experiments/relu_vs_tanh/runs/ (git-ignored). Then: make report.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
PY=${PY:-.venv/bin/python}
EXPERIMENTS=${EXPERIMENTS:-experiments}
# One intra-op thread: on a few shared cores, two threads spin-wait and halve throughput.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=${WANDB_MODE:-disabled}
RUNS=$EXPERIMENTS/relu_vs_tanh/runs
# 1. The lr grid with seed 0: activation x init x lr.
if [ "${SKIP_GRID:-0}" != 1 ]; then
  nice -n 10 $PY src/train.py -m experiment=study_fig1 \
    model.activation=relu,tanh model.init=paper,default \
    optimizer.lr=0.01,0.03,0.1 seed=0 hydra.sweep.dir=$RUNS/grid
fi
# 2. Seeds 1 and 2 at each arm's tuned lr (lowest mean training error with seed 0).
[ "${SKIP_SEEDS:-0}" = 1 ] && exit 0
ARMS=$($PY -m alexnet_lab.report --experiments $EXPERIMENTS --best-lr)
echo "$ARMS" | while read -r arm; do
  # shellcheck disable=SC2086  # the overrides are meant to split
  nice -n 10 $PY src/train.py -m experiment=study_fig1 $arm seed=1,2 \
    hydra.sweep.dir=$RUNS/seeds/$(echo "$arm" | sed 's/model\.//g; s/optimizer\.//; s/ /_/g; s/=/-/g') \
    < /dev/null
done
# 3. The default-init arms three times longer (24 epochs, 384 steps), seeds 0-2, so the
#    lower thresholds come within reach.
echo "$ARMS" | grep "init=default" | while read -r arm; do
  # shellcheck disable=SC2086
  nice -n 10 $PY src/train.py -m experiment=study_fig1 $arm seed=0,1,2 trainer.max_epochs=24 \
    hydra.sweep.dir=$RUNS/long/$(echo "$arm" | sed 's/model\.//g; s/optimizer\.//; s/ /_/g; s/=/-/g') \
    < /dev/null
done
