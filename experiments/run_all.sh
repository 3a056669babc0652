#!/usr/bin/env bash
# Every study, in priority order, one job at a time (about 75 min on 2 shared CPU cores).
set -euo pipefail
cd "$(dirname "$0")"
for study in relu_vs_tanh baseline dropout augmentation lrn overlap_pool two_towers; do
  echo "== $study"
  ./$study/run.sh
done
