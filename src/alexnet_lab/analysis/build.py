"""`make report`: every study's results and figures, then the claims table.

A study without runs at this scale keeps its committed results untouched and its claims
rows say the runs are pending; with no runs at all nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alexnet_lab.analysis.ablation import report_study
from alexnet_lab.analysis.continued import report_continued
from alexnet_lab.analysis.fig1 import report_relu_vs_tanh
from alexnet_lab.analysis.specs import (
    ABLATIONS,
    FIG1_CLAIM,
    FIG1_OTHERS,
    FIG1_PAPER,
    FIG1_STUDY,
    SCALES,
    Scale,
)
from alexnet_lab.analysis.stats import PENDING
from alexnet_lab.analysis.tables import check_prose, markdown_table, replace_between

FIG1_ALL = "three inits × two input scales"
CLAIMS_HEADER = [
    "claim",
    "paper",
    "others",
    "comparison",
    "ours: Δ, 95% CI",
    "detectable (80% power)",
    "verdict",
    "compute",
]


def any_runs(experiments: Path, scale: Scale) -> bool:
    return any(experiments.glob(f"*/{scale.runs}/**/metrics.json"))


def _claim_rows(claim: str, link: str, paper: str, others: str, rows) -> list[list[str]]:
    lines = []
    for i, row in enumerate(rows):
        head = [f"[{claim}]({link})", paper, others] if i == 0 else ["", "", ""]
        lines.append(
            [*head, row["comparison"], row["ours"], row["mde"], row["verdict"], row["compute"]]
        )
    return lines


def _pending(labels: list[str]) -> list[dict[str, str]]:
    return [
        {"comparison": label, "ours": PENDING, "mde": "—", "verdict": PENDING, "compute": "—"}
        for label in labels
    ]


def report_all(experiments: Path, scale: Scale | str = "cpu") -> list[list[str]] | None:
    """Rebuild what the runs support; the claims table rows, or None when there are none."""
    scale = SCALES[scale] if isinstance(scale, str) else scale
    if not any_runs(experiments, scale):
        print(
            f"No runs under {experiments}/*/{scale.runs}/: nothing regenerated, every "
            f"committed result left as it is. Run the studies first (make study)."
        )
        return None
    table: list[list[str]] = []
    fig1 = report_relu_vs_tanh(experiments / FIG1_STUDY, scale)
    if fig1:
        check_prose(experiments / FIG1_STUDY / "README.md", [r["verdict"] for r in fig1])
    if fig1 or not scale.frozen:
        table += _claim_rows(
            FIG1_CLAIM,
            f"{FIG1_STUDY}/",
            FIG1_PAPER,
            FIG1_OTHERS,
            fig1 or _pending([FIG1_ALL]),
        )
    for study in ABLATIONS:
        rows = report_study(study, experiments, scale)
        if rows and not scale.frozen:  # a kept first pass may differ from today's prose
            check_prose(experiments / study.name / "README.md", [r["verdict"] for r in rows])
        if not rows and scale.frozen:
            continue
        rows = rows or _pending([c.label for c in study.comparisons])
        table += _claim_rows(study.claim, f"{study.name}/", study.paper, study.others, rows)
    if scale.name == "cpu":  # the CPU protocol's reference, continued past its end
        report_continued(experiments)
    readme = experiments / "README.md"
    text = markdown_table(CLAIMS_HEADER, table)
    if readme.is_file() and not replace_between(readme, scale.marker, text):
        print(f"{readme} has no <!-- {scale.marker}:start/end --> markers: table not pasted.")
    for line in table:
        if line[0]:
            print(line[0].split("](")[0].lstrip("["))
        print(f"    {line[3]}: {line[6]}")
    return table


def pending_table() -> str:
    """The claims table before any v2 run (what experiments/README.md starts with)."""
    rows: list[list[Any]] = _claim_rows(
        FIG1_CLAIM, f"{FIG1_STUDY}/", FIG1_PAPER, FIG1_OTHERS, _pending([FIG1_ALL])
    )
    for study in ABLATIONS:
        rows += _claim_rows(
            study.claim,
            f"{study.name}/",
            study.paper,
            study.others,
            _pending([c.label for c in study.comparisons]),
        )
    return markdown_table(CLAIMS_HEADER, rows)
