"""Benchmarks as ratios: python src/bench.py [--quick] [--device cuda] [--root DIR]

Prints a table and writes the same figures as JSON under outputs/bench/. Every ratio comes
with its 95% interval and a verdict; the exit status is 1 only when a ratio decidedly
fails its goal (its whole interval below it) in a full run. `make bench-quick` runs every
measurement at toy sizes; `make bench` the real ones.
"""

import argparse
import os
import sys
from pathlib import Path

from alexnet_lab.bench.common import TARGETS
from alexnet_lab.bench.paired import decided_failures
from alexnet_lab.bench.suite import (
    BenchConfig,
    exit_status,
    format_table,
    run_bench,
    write_results,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes, seconds not minutes")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--root", help="ImageNet-style tree of JPEGs to use (default: generated)")
    parser.add_argument("--images", type=int, help="how many JPEGs to generate")
    parser.add_argument(
        "--repeats", type=int, help="paired rounds per comparison at least (then adaptive)"
    )
    parser.add_argument(
        "--budget", type=float, help="wall seconds per comparison for more rounds (default 180)"
    )
    parser.add_argument(
        "--loop-budget", type=float, help="the same for the training loop's table (default 300)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one pipeline pass")
    root = Path(os.environ.get("ALEXNET_LAB_ROOT", "."))
    parser.add_argument("--out", type=Path, default=root / "outputs" / "bench")
    parser.add_argument("--data-dir", type=Path, default=root / "data" / "bench")
    args = parser.parse_args()

    cfg = BenchConfig.preset(args.quick, args.device)
    cfg.root, cfg.profile = args.root, args.profile
    if args.images:
        cfg.num_images = args.images
    if args.repeats:
        cfg.min_rounds = args.repeats
        cfg.max_rounds = max(cfg.max_rounds, args.repeats)
    if args.budget:
        cfg.budget_s = args.budget
    if args.loop_budget:
        cfg.loop_budget_s = args.loop_budget
    cfg.budget()  # a bad --repeats: one clear error before anything runs
    results = run_bench(cfg, args.data_dir)
    print(format_table(results))
    print(f"\nwritten: {write_results(results, args.out)}")
    failed = decided_failures({key: results[key] for key in TARGETS})
    if exit_status(results):
        print(f"FAILED: the whole interval lies below the goal for {', '.join(failed)}")
    sys.exit(exit_status(results))


if __name__ == "__main__":
    main()
