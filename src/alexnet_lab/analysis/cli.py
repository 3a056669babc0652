"""`python -m alexnet_lab.analysis COMMAND`: what make report and experiments/*/run.sh call."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from alexnet_lab.analysis import lr_search, runs
from alexnet_lab.analysis.specs import FIG1_STUDY, SCALES

EXPERIMENTS = Path("experiments")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m alexnet_lab.analysis", description=__doc__)
    parser.add_argument("--experiments", type=Path, default=EXPERIMENTS)
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("report", help="rebuild every study's tables, figures, claims table")
    compact = commands.add_parser("compact", help="write history.csv for jobs lacking one")
    compact.add_argument("folder", type=Path)
    commands.add_parser("plan-grid", help="claim 1: lr-grid jobs still to run, one per line")
    commands.add_parser("plan-tuned", help="claim 1: the tuned arms, one per line")
    tuned = commands.add_parser("tuned-lr", help="claim 1: one arm's tuned lr as an override")
    tuned.add_argument("condition")
    tuned.add_argument("activation")
    args = parser.parse_args(argv)

    scale = SCALES[args.scale]
    fig1_runs = args.experiments / FIG1_STUDY / scale.runs
    if args.command == "compact":
        runs.compact_all(args.folder)
    elif args.command == "plan-grid":
        print("\n".join(lr_search.plan_grid(fig1_runs)))
    elif args.command == "plan-tuned":
        print("\n".join(lr_search.plan_tuned(fig1_runs)))
    elif args.command == "tuned-lr":
        override = lr_search.tuned_overrides(fig1_runs, args.condition, args.activation)
        if not override:
            sys.exit(
                f"No lr grid for {args.condition}/{args.activation} under {fig1_runs}/grid: "
                f"run experiments/{FIG1_STUDY}/run.sh first."
            )
        print(override)
    else:
        from alexnet_lab.analysis.build import report_all

        report_all(args.experiments, scale)
