#!/usr/bin/env bash
# Claim 2: local response normalisation after conv1/conv2 vs none, in two nets at both
# input scales. Jobs with a completed record are skipped (experiments/lib.sh).
#   run.sh small   the small AlexNet (reference at unit scale: experiments/baseline)
#   run.sh fig1    the four-layer net at claim 1's tuned ReLU lr (run relu_vs_tanh first)
#   run.sh         both
#   run.sh continued  the four-layer net's unit-scale arms run on to 20 epochs with the
#                  lr / 10 steps of claims 2-6 placed after the constant-lr part (after
#                  epochs 12 and 15), into runs-continued/ (CPU protocol only): have they
#                  stopped improving? 20, so that the last 6 epochs (the rule's window)
#                  start after the first step, as claims 2-6's 30-36 do. No checkpoints are
#                  kept, so they train from the start; their first 12 epochs repeat the
#                  committed runs'.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
source experiments/lib.sh
PARTS=${1:-small fig1}

if [ "$PARTS" = continued ]; then
  if [ "$STUDY_SCALE" != cpu ]; then
    echo "run.sh continued extends the CPU protocol's runs: use STUDY_SCALE=cpu." >&2
    exit 2
  fi
  PRESET=study_fig1
  RUNS_NAME=runs-continued
  all_seeds=$SEEDS
  for seed in ${all_seeds//,/ }; do  # seed by seed, so a cut-short run leaves pairs
    for name in lrn no_lrn; do
      record=$EXPERIMENTS/lrn/runs/fig1_unit/$name/seed_0/.hydra/overrides.yaml
      overrides=$(sed -n 's/^- //p' "$record" | grep -v '^experiment=\|^seed=')
      # shellcheck disable=SC2086  # the overrides are meant to split
      SEEDS=$seed run_arm lrn "fig1_unit/$name" $overrides scheduler=multistep \
        'scheduler.milestones=[12,15]' trainer.max_epochs=20
    done
  done
  finish
fi

if [[ $PARTS == *small* ]]; then
  PRESET=study_small
  run_arm lrn small_unit/no_lrn model.lrn=false
  for lrn in true false; do
    name=$([ $lrn = true ] && echo lrn || echo no_lrn)
    # PyTorch's default init: the paper's and Caffe's leave this net at chance at paper scale.
    run_arm lrn "small_paper/$name" model.lrn=$lrn model.init=default data.input_scale=paper
  done
fi
if [[ $PARTS == *fig1* ]]; then
  PRESET=study_fig1
  # Validation (and the held-out slice) every 2 epochs: the verdict reads val error at
  # the epoch the held-out slice picks.
  for condition in default-init_unit-scale paper-init_paper-scale; do
    lr=$("$PY" -m alexnet_lab.analysis --experiments "$EXPERIMENTS" --scale "$STUDY_SCALE" \
      tuned-lr "$condition" relu)
    init=${condition%%-init_*} scale=${condition#*-init_} scale=${scale%-scale}
    for lrn in true false; do
      name=$([ $lrn = true ] && echo lrn || echo no_lrn)
      run_arm lrn "fig1_$scale/$name" model.lrn=$lrn "model.init=$init" \
        "data.input_scale=$scale" "$lr" trainer.check_val_every_n_epoch=2
    done
  done
fi
finish
