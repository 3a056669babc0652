#!/usr/bin/env bash
# Claim 3: overlapping 3/2 max-pooling vs 2/2 (reference: experiments/baseline).
# Jobs with a completed record are skipped (experiments/lib.sh). Then: make report.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
source experiments/lib.sh
PRESET=study_small
run_arm overlap_pool no_overlap model.overlap_pool=false
finish
