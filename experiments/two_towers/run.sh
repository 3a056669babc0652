#!/usr/bin/env bash
# Claim 6: two towers (groups=2) vs one tower of the same widths (reference:
# experiments/baseline). Outside the 4-hour CPU budget of claims 1-5: run it after them.
# Jobs with a completed record are skipped (experiments/lib.sh). Then: make report.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
source experiments/lib.sh
PRESET=study_small
run_arm two_towers one_tower model.groups=1
finish
