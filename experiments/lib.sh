# Sourced by every experiments/<study>/run.sh (from the repository root).
#
# One job per (arm, seed), each in its own folder <study>/<runs>/<arm>/seed_<seed>. A job
# whose metrics.json says "completed" is skipped, so a study can be cut short and
# restarted, or extended with more seeds (SEEDS=0,1,2,3,4,5,6), and a clone that has the
# committed records runs nothing. After each arm, Lightning's step-level CSV log is
# compacted into the committed history.csv.
#
# STUDY_SCALE=cpu (default): the CPU protocol of the presets conf/experiment/study_*.yaml.
# STUDY_SCALE=gpu: the same protocol on all of Fashion-MNIST at full width, one GPU.
# STUDY_SCALE=gpu-cifar10: the same on CIFAR-10 (needs its files under data/, see
# experiments/README.md). Each scale keeps its own runs folder and results.

PY=${PY:-.venv/bin/python}
EXPERIMENTS=${EXPERIMENTS:-experiments}
STUDY_SCALE=${STUDY_SCALE:-cpu}
SEEDS=${SEEDS:-0,1,2,3,4}
# Extra overrides for every job (smoke tests: STUDY_EXTRA="trainer.max_epochs=1"). The skip
# test looks only at the arm and seed, so use a separate EXPERIMENTS folder for such runs.
read -r -a STUDY_EXTRA_ARGS <<< "${STUDY_EXTRA:-}"
# One intra-op thread: on a few shared cores, two threads spin-wait and halve throughput.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} WANDB_MODE=${WANDB_MODE:-disabled}

case $STUDY_SCALE in
  cpu)
    RUNS_NAME=runs
    SCALE_ARGS=() ;;
  gpu)
    RUNS_NAME=runs-gpu
    SCALE_ARGS=(trainer=gpu data.train_per_class=null data.holdout_per_class=500
      data.num_workers=8 data.batch_size=128 model.width=1.0) ;;
  gpu-cifar10)
    RUNS_NAME=runs-gpu-cifar10
    SCALE_ARGS=(trainer=gpu data=cifar10 data.train_per_class=null data.holdout_per_class=500
      data.num_workers=8 data.batch_size=128 model.width=1.0) ;;
  *)
    echo "STUDY_SCALE=$STUDY_SCALE: use cpu, gpu or gpu-cifar10." >&2
    exit 2 ;;
esac
FAILED=0

completed() { grep -qs '"status": "completed"' "$1/metrics.json"; }

# run_arm STUDY ARM OVERRIDES...: the seeds of one arm that have no completed record, as one
# Hydra multirun of the study's preset ($PRESET) with the overrides on top.
run_arm() {
  local study=$1 arm=$2
  shift 2
  local runs=$EXPERIMENTS/$study/$RUNS_NAME missing=() seed
  for seed in ${SEEDS//,/ }; do
    completed "$runs/$arm/seed_$seed" || missing+=("$seed")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "== $study/$arm: every seed has its record, skipped"
    return 0
  fi
  local seeds
  seeds=$(IFS=,; echo "${missing[*]}")
  echo "== $study/$arm: seeds $seeds"
  # A failed job is recorded (metrics.json says failed) and retried on the next run; the
  # other jobs go on. The job folder is named from its arm and seed, not its sweep index.
  nice -n 10 "$PY" src/train.py -m "experiment=$PRESET" "$@" "${SCALE_ARGS[@]}" \
    "${STUDY_EXTRA_ARGS[@]}" "seed=$seeds" \
    "hydra.sweep.dir=$runs" "hydra.sweep.subdir=$arm/seed_\${seed}" < /dev/null || FAILED=1
  "$PY" -m alexnet_lab.analysis compact "$runs/$arm"
}

finish() {
  [ "$FAILED" = 0 ] || echo "Some jobs failed: their metrics.json says why; rerun to retry." >&2
  exit "$FAILED"
}
