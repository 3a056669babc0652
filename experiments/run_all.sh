#!/usr/bin/env bash
# Every study, one job per core in two lanes (on 2 cores: about 4 hours for claims 1-5 on
# an otherwise idle machine; see experiments/README.md). LANES=1 runs them one after the
# other. Finished jobs are skipped, so this can be stopped and restarted.
set -uo pipefail
cd "$(dirname "$0")"
lane_fig1() {
  local status=0
  ./relu_vs_tanh/run.sh || status=1
  ./lrn/run.sh fig1 || status=1  # needs claim 1's tuned lrs: same lane, after it
  return $status
}
lane_small() {
  local status=0 study
  for study in baseline dropout augmentation overlap_pool; do ./$study/run.sh || status=1; done
  ./lrn/run.sh small || status=1
  [ "${WITH_TWO_TOWERS:-0}" = 1 ] && { ./two_towers/run.sh || status=1; }
  return $status
}
if [ "${LANES:-2}" = 1 ]; then
  lane_fig1; a=$?; lane_small; b=$?
else
  lane_fig1 > fig1_lane.log 2>&1 & fig1=$!
  lane_small > small_lane.log 2>&1 & small=$!
  echo "two lanes running: tail -f experiments/fig1_lane.log experiments/small_lane.log"
  wait $fig1; a=$?; wait $small; b=$?
fi
exit $(( a || b ))
