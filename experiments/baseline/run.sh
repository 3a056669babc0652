#!/usr/bin/env bash
# The shared reference arm of claims 2-6: the small AlexNet with every paper switch on.
# Jobs with a completed record are skipped (experiments/lib.sh). Then: make report.
#   run.sh            the protocol's 36 epochs, into runs/
#   run.sh continued  the same jobs run on to epoch 48 (lr 1e-4 from epoch 30), into
#                     runs-48ep/: has the reference stopped improving? (CPU protocol only)
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
source experiments/lib.sh
PRESET=study_small
case ${1:-} in
  "") ;;
  continued)
    if [ "$STUDY_SCALE" != cpu ]; then
      echo "run.sh continued extends the CPU protocol's runs: use STUDY_SCALE=cpu." >&2
      exit 2
    fi
    RUNS_NAME=runs-48ep
    STUDY_EXTRA_ARGS+=(trainer.max_epochs=48) ;;
  *)
    echo "usage: run.sh [continued] (got '$1')." >&2
    exit 2 ;;
esac
run_arm baseline reference
finish
