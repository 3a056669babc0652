"""`make bench-quick` runs every measurement; its JSON has every figure (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from helpers.project import REPO


def test_bench_quick_smoke_writes_every_figure(tmp_path: Path):
    """A smoke test: every figure is there and positive; no rate is compared to a bound."""
    result = subprocess.run(
        ["make", "-s", "bench-quick", f"PY={REPO / '.venv' / 'bin' / 'python'}"],
        cwd=REPO,
        env={**os.environ, "ALEXNET_LAB_ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "pipeline_speedup_vs_torchvision" in result.stdout  # the table
    (path,) = (tmp_path / "outputs" / "bench").glob("bench-quick-*.json")
    figures = json.loads(path.read_text())
    for key in (
        "pipeline_speedup_vs_torchvision",
        "pipeline_vs_decode_only",
        "prepared_speedup_vs_torchvision",
        "loop_vs_raw_pytorch",
    ):
        assert figures[key] > 0, key
    rates = figures["pipeline"]["images_per_s_per_core"]
    assert set(rates) >= {"decode_only", "torchvision_recipe", "project", "prepared"}
    assert all(rate > 0 for rate in rates.values())
    assert figures["prepare"]["converted"] > 0 and figures["prepare"]["failed"] == 0
    assert figures["prepare"]["images_per_s_per_core"] > 0
    assert all(rate > 0 for rate in figures["loop"]["images_per_s"].values())
    rows = figures["models"]["rows"]
    assert {(r["dtype"], r["channels_last"]) for r in rows} == {
        ("fp32", False),
        ("fp32", True),
        ("bf16", False),
        ("bf16", True),
    }
    assert all(r["images_per_s"] > 0 and r["gflop_per_step"] > 0 for r in rows)
    assert figures["machine"]["device"] == "cpu"
