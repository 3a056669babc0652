"""`make report`: every study's results and figures, then the claims table.

A study without runs at this scale keeps its committed results untouched and its claims
rows say the runs are pending; with no runs at all nothing is written. The claims table
gives each comparison's p-value with Holm's adjustment over every comparison of the
table that has one, and checks each study README's prose against what was generated.
"""

from __future__ import annotations

import math
import re
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
from alexnet_lab.analysis.stats import PENDING, VERDICTS, holm
from alexnet_lab.analysis.tables import (
    check_numbers,
    check_prose,
    markdown_table,
    p_value,
    replace_between,
)

FIG1_ALL = "three inits × two input scales"
CLAIMS_HEADER = [
    "claim",
    "paper",
    "others",
    "comparison",
    "ours: Δ, 95% CI",
    "size vs the paper (1 = the paper's effect)",
    "p (Holm-adjusted)",
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
        comparison = row["comparison"] + (f" ({row['note']})" if row.get("note") else "")
        lines.append(
            [
                *head,
                comparison,
                row["ours"],
                row.get("size", "—"),
                row.get("p", "—"),
                row["mde"],
                row["verdict"],
                row["compute"],
            ]
        )
    return lines


def _pending(labels: list[str]) -> list[dict[str, str]]:
    return [
        {"comparison": label, "ours": PENDING, "mde": "—", "verdict": PENDING, "compute": "—"}
        for label in labels
    ]


def family_p_values(rows: list[dict[str, Any]]) -> int:
    """Write each row's 'p' cell: its p-value (t or sign test) and, in brackets, Holm's
    adjustment over every row that has one; the number of such rows."""
    judged = [row.get("judgement") for row in rows]
    raw = [j.p if j is not None else math.nan for j in judged]
    adjusted = holm(raw)
    for row, j, p, p_holm in zip(rows, judged, raw, adjusted, strict=True):
        if j is not None and not math.isnan(p):
            row["p"] = f"{p_value(p)} ({p_value(p_holm)}), {j.test}-test"
    return sum(not math.isnan(p) for p in raw)


def report_all(experiments: Path, scale: Scale | str = "cpu") -> list[list[str]] | None:
    """Rebuild what the runs support; the claims table rows, or None when there are none."""
    scale = SCALES[scale] if isinstance(scale, str) else scale
    if not any_runs(experiments, scale):
        print(
            f"No runs under {experiments}/*/{scale.runs}/: nothing regenerated, every "
            f"committed result left as it is. Run the studies first (make study)."
        )
        return None
    studies: list[tuple[str, str, str, str, list[dict[str, Any]]]] = []
    verdicts: dict[str, list[str]] = {}
    fig1 = report_relu_vs_tanh(experiments / FIG1_STUDY, scale)
    if fig1:
        check_prose(experiments / FIG1_STUDY / "README.md", [r["verdict"] for r in fig1])
        verdicts[FIG1_STUDY] = [r["verdict"] for r in fig1]
    if fig1 or not scale.frozen:
        studies.append(
            (FIG1_CLAIM, FIG1_STUDY, FIG1_PAPER, FIG1_OTHERS, fig1 or _pending([FIG1_ALL]))
        )
    for study in ABLATIONS:
        rows = report_study(study, experiments, scale)
        if rows and not scale.frozen:  # a kept first pass may differ from today's prose
            check_prose(experiments / study.name / "README.md", [r["verdict"] for r in rows])
            verdicts[study.name] = [r["verdict"] for r in rows]
        if not rows and scale.frozen:
            continue
        rows = rows or _pending([c.label for c in study.comparisons])
        studies.append((study.claim, study.name, study.paper, study.others, rows))
    tested = family_p_values([row for *_, rows in studies for row in rows])
    table: list[list[str]] = []
    for claim, name, paper, others, rows in studies:
        table += _claim_rows(claim, f"{name}/", paper, others, rows)
    if scale.name == "cpu":  # the CPU protocol's reference, continued past its end
        report_continued(experiments)
    readme = experiments / "README.md"
    text = (
        markdown_table(CLAIMS_HEADER, table)
        + f"\n\n{len(table)} comparisons, {tested} with a p-value (the others: runs pending, "
        "or no seed to compare); the bracketed p is Holm's adjustment over those "
        f"{tested}: where it is below 0.05, so is the family-wise error rate."
    )
    if readme.is_file() and not replace_between(readme, scale.marker, text):
        print(f"{readme} has no <!-- {scale.marker}:start/end --> markers: table not pasted.")
    if not scale.frozen:
        corpus = generated_text(experiments)
        for name, said in verdicts.items():
            # Its claims rows' verdicts and any other its own tables give (claim 1's levels).
            tables = "".join(p.read_text() for p in (experiments / name).glob("results*.md"))
            said = [*said, *(v for v in VERDICTS if v in tables)]
            check_numbers(experiments / name / "README.md", corpus, said)
        every = [v for said in verdicts.values() for v in said]
        check_numbers(readme, corpus, every)
    for line in table:
        if line[0]:
            print(line[0].split("](")[0].lstrip("["))
        print(f"    {line[3]}: {line[8]}")
    return table


def generated_text(experiments: Path) -> str:
    """Everything `make report` wrote: every study's results*.md and the generated blocks
    of every README (the claims tables, the baseline's continued table)."""
    parts = [p.read_text() for p in sorted(experiments.glob("*/results*.md"))]
    for readme in sorted([experiments / "README.md", *experiments.glob("*/README.md")]):
        if readme.is_file():
            text = readme.read_text()
            parts += re.findall(r"<!-- ([\w-]+):start -->(.*?)<!-- \1:end -->", text, re.S)
    return "\n".join(p if isinstance(p, str) else p[1] for p in parts)


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
