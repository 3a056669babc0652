"""docs/performance.md's bench tables are generated from the committed records in
docs/bench-records/ (`make bench-page`): the page must be what they give, byte for byte,
and every record the index names must be a full run's unchanged output."""

from __future__ import annotations

import json

from alexnet_lab.bench.common import TARGETS
from alexnet_lab.bench.records import PAGE, RECORDS, load_runs, render_page


def test_the_performance_page_tables_are_generated_from_the_committed_records():
    page = PAGE.read_text()
    assert render_page(page, load_runs()) == page, (
        "docs/performance.md's bench tables differ from docs/bench-records/: run `make bench-page`"
    )


def test_every_indexed_record_is_a_full_run_with_every_ratio_and_its_pairs():
    runs = load_runs()
    assert len(runs) >= 2
    for run in runs:
        record = run["record"]
        assert record["mode"] == "full", run["file"]
        for key in TARGETS:
            result = record[key]
            assert len(result["pairs"]) >= 2 and result["low"] <= result["value"], run["file"]
        if record["conditions"].get("commit"):  # recorded by the bench since it could
            assert record["conditions"]["commit"].startswith(run["commit"]), run["file"]
    committed = {path.name for path in RECORDS.glob("*.json")}
    assert committed == {run["file"] for run in runs}, "a record not in index.yaml, or missing"


def test_a_changed_record_changes_the_page():
    runs = load_runs()
    runs[-1]["record"] = json.loads(json.dumps(runs[-1]["record"]))
    runs[-1]["record"]["loop_vs_raw_pytorch"]["value"] = 0.5
    assert render_page(PAGE.read_text(), runs) != PAGE.read_text()
