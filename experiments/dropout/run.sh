#!/usr/bin/env bash
# Claim 4: dropout 0.5 on fc6/fc7 vs none (reference arm: experiments/baseline).
# Jobs with a completed record are skipped (experiments/lib.sh). Then: make report.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
source experiments/lib.sh
PRESET=study_small
run_arm dropout no_dropout model.dropout=0
finish
