"""Rebuild every study's tables and figures from the runs' outputs: `make report`."""

from alexnet_lab.report import main

if __name__ == "__main__":
    main()
