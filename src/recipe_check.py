"""Does each training recipe leave chance on real images? python src/recipe_check.py [--help]

Writes outputs/recipe_check/<time>/recipe_check.md (the table) and .json (per-step losses);
exits 1 when a preset the README offers stays at chance. `make recipe-check` runs it.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from alexnet_lab.bench.recipe_check import PRESETS, format_table, run_recipe_check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=60, help="optimizer steps per recipe (torchvision's: 2.5x)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--window", type=int, default=10, help="steps the loss is averaged over")
    parser.add_argument("--presets-only", action="store_true", help="skip the init x scale grid")
    parser.add_argument(
        "--only", nargs="+", default=(), choices=[r.name for r in PRESETS], help="these presets"
    )
    root = Path(os.environ.get("ALEXNET_LAB_ROOT", "."))
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    parser.add_argument("--out", type=Path, default=root / "outputs" / "recipe_check" / stamp)
    parser.add_argument("--data-dir", type=Path, default=root / "data")
    args = parser.parse_args()
    for name in ("steps", "batch_size", "window"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.window > args.steps:
        parser.error("--window must not exceed --steps")

    start = time.monotonic()
    outcomes, ok = run_recipe_check(
        train_script=Path(__file__).with_name("train.py"),
        data_dir=args.data_dir,
        out_dir=args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        window=args.window,
        with_grid=not args.presets_only,
        only=tuple(args.only),
    )
    print()
    print(format_table(outcomes, args.window, args.batch_size))
    print(f"\n{time.monotonic() - start:.0f} s; written to {args.out}")
    if not ok:
        print("A preset did not leave chance within the budget (bold rows above).")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
