"""Benchmarks as ratios: python src/bench.py [--quick] [--device cuda] [--root DIR]

Prints a table and writes the same figures as JSON under outputs/bench/.
`make bench-quick` runs every measurement at toy sizes; `make bench` the real ones.
"""

import argparse
import os
from pathlib import Path

from alexnet_lab.bench.suite import BenchConfig, format_table, run_bench, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes, seconds not minutes")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--root", help="ImageNet-style tree of JPEGs to use (default: generated)")
    parser.add_argument("--images", type=int, help="how many JPEGs to generate")
    parser.add_argument("--repeats", type=int, help="interleaved repeats per comparison")
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
        cfg.repeats = args.repeats
    results = run_bench(cfg, args.data_dir)
    print(format_table(results))
    print(f"\nwritten: {write_results(results, args.out)}")


if __name__ == "__main__":
    main()
