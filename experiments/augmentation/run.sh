#!/usr/bin/env bash
# Claim 5: crops + flips + PCA noise (reference: experiments/baseline) vs crops + flips
# only vs none. Jobs with a completed record are skipped (experiments/lib.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root
source experiments/lib.sh
PRESET=study_small
run_arm augmentation no_augment data.augment=false data.pca_std=0
run_arm augmentation no_pca data.pca_std=0
finish
