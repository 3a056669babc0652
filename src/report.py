"""Rebuild every study's tables, figures and the claims table from the runs: `make report`.

    python src/report.py [--scale cpu|cpu-24ep|gpu|gpu-cifar10]

The code is alexnet_lab.analysis (python -m alexnet_lab.analysis --help).
"""

import sys

from alexnet_lab.analysis.cli import main

if __name__ == "__main__":
    main([*sys.argv[1:], "report"])
