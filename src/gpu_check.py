"""Every GPU path, measured and checked in minutes: python src/gpu_check.py (make gpu-check).

Without a CUDA GPU it says so in one line and exits 0. See alexnet_lab/bench/gpu_check.py.
"""

import sys

from alexnet_lab.bench.gpu_check import main

if __name__ == "__main__":
    sys.exit(main())
