#!/usr/bin/env bash
# The shared reference arm of claims 2-6: the small AlexNet with every paper switch on.
# Jobs with a completed record are skipped (experiments/lib.sh). Then: make report.
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
source experiments/lib.sh
PRESET=study_small
run_arm baseline reference
finish
