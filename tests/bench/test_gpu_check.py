"""`make gpu-check`: one line and exit 0 without a GPU; on fake numbers, the table, the
JSON and the metrics checks; and (slow) its training paths run on CPU at toy sizes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers.project import run_make

from alexnet_lab.bench import gpu_check
from alexnet_lab.bench.gpu_check import (
    GpuCheckConfig,
    check_run_metrics,
    format_gpu_table,
    main,
    run_gpu_check,
    run_row,
)
from alexnet_lab.data.shards import write_shards


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--out", str(tmp_path / "out")]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("gpu-check: no CUDA GPU") and "nothing to check" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine make gpu-check runs it all")
def test_make_gpu_check_on_this_machine_without_a_gpu(tmp_path: Path):
    result = run_make("gpu-check", tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.splitlines()) == 1 and "no CUDA GPU" in result.stdout


def fake_results(failed: bool = False) -> dict:
    def model(label, rate, fraction):
        return {
            "name": f"model {label}",
            "ok": True,
            "images_per_s": rate,
            "fraction_of_bf16_matmul": fraction,
            "wall_s": 2.0,
        }

    rows = [
        model("fp32", 4100.25, 0.061),
        model("bf16", 9800.0, 0.146),
        model("bf16 + channels_last", 11200.5, 0.167),
        model("bf16 + compile", 12950.0, 0.193),
        {"name": "train: JPEG folder, CPU decode (16 workers)", "ok": True, "images_per_s": 6100.0},
        {
            "name": "train: LitData shards, CPU decode (16 workers)",
            "ok": True,
            "images_per_s": 6400.0,
        },
        {
            "name": "train 2 epochs + eval (metrics.json)",
            "ok": not failed,
            "problems": ["train ran 1 epochs, expected 2"] if failed else [],
            "val/acc_top1": 0.25,
            "eval/acc_top1": 0.25,
        },
    ]
    return {
        "machine": {"gpu": "NVIDIA H200", "torch": "2.14.1"},
        "cuda": "13.0",
        "matmul_tflop_per_s": {"bf16": 760.4, "fp32": 51.2},
        "rows": rows,
        "ok": not failed,
        "config": {"batch_size": 256},
        "wall_s": 187.0,
    }


def test_table_has_every_row_with_its_rate_and_fraction_of_the_bf16_matmul_rate():
    table = format_gpu_table(fake_results())
    lines = table.splitlines()
    assert "NVIDIA H200" in lines[0] and "bf16 760.4" in lines[0] and "187 s" in lines[0]
    fp32 = next(line for line in lines if "model fp32" in line)
    assert "4100.2" in fp32 and "0.061" in fp32 and fp32.rstrip().endswith("ok")
    shards = next(line for line in lines if "LitData shards" in line)
    assert "6400.0" in shards and " - " in shards  # a pipeline rate has no matmul fraction
    assert "val/acc_top1 0.250 = eval 0.250" in table
    assert lines[-1] == "all checks passed"
    failed = format_gpu_table(fake_results(failed=True))
    assert "FAILED: train ran 1 epochs, expected 2" in failed
    assert failed.splitlines()[-1] == "SOME CHECKS FAILED"


def good_metrics() -> tuple[dict, dict]:
    train = {
        "status": "completed",
        "epochs": 2,
        "global_step": 10,
        "train/loss": 6.9,
        "val/loss": 6.91,
        "val/acc_top1": 0.25,
        "last_checkpoint": "ckpt/last.ckpt",
    }
    evaluation = {"status": "completed", "eval/acc_top1": 0.25, "eval/loss": 6.9101}
    return train, evaluation


@pytest.mark.parametrize(
    "change, problem",
    [
        ({}, None),
        ({"epochs": 1}, "ran 1 epochs, expected 2"),
        ({"global_step": 9}, "ran 9 steps, expected 10"),
        ({"val/loss": math.nan}, "val/loss = nan"),
        ({"status": "failed", "error": "CUDA out of memory"}, "CUDA out of memory"),
        ({"eval/acc_top1": 0.5}, "eval/acc_top1 = 0.5 but the run's last val/acc_top1 = 0.25"),
        ({"eval_status": "failed"}, "eval status 'failed'"),
    ],
)
def test_run_metrics_checks(change: dict, problem: str | None):
    train, evaluation = good_metrics()
    for key, value in change.items():
        if key.startswith("eval"):
            evaluation[key.replace("eval_", "")] = value
        else:
            train[key] = value
    problems = check_run_metrics(train, evaluation, epochs=2, steps_per_epoch=5)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def test_a_failing_measurement_is_a_failed_row_not_the_end():
    def broken():
        raise RuntimeError("nvjpeg: decode failed")

    row = run_row("train: decode on GPU", broken)
    assert row["ok"] is False and row["problems"] == ["RuntimeError: nvjpeg: decode failed"]
    assert run_row("fine", lambda: {"images_per_s": 5.0})["ok"] is True


def test_driver_writes_the_table_as_json(monkeypatch, tmp_path: Path):
    fake = fake_results()
    monkeypatch.setattr(gpu_check, "make_prepared_tree", lambda root, count: root)
    monkeypatch.setattr("alexnet_lab.data.shards.write_shards", lambda *a, **k: None)
    monkeypatch.setattr(
        gpu_check, "model_rows", lambda cfg: (fake["matmul_tflop_per_s"], fake["rows"][:4])
    )
    monkeypatch.setattr(gpu_check, "end_to_end_rows", lambda tree, shards, cfg: fake["rows"][4:6])
    monkeypatch.setattr(gpu_check, "train_and_eval", lambda tree, work, cfg: fake["rows"][6])
    monkeypatch.setattr("alexnet_lab.bench.common.machine_info", lambda device: fake["machine"])
    results = run_gpu_check(GpuCheckConfig(device="cpu"), tmp_path / "data", log=lambda m: None)
    assert results["ok"] and results["rows"] == fake["rows"]
    path = gpu_check.write_results(results, tmp_path / "bench")
    latest = tmp_path / "bench" / "latest-gpu-check.json"
    assert path.name.startswith("gpu-check-") and path.read_text() == latest.read_text()
    assert json.loads(path.read_text())["rows"] == fake["rows"]
    assert "model bf16" in format_gpu_table(results)


@pytest.mark.slow
def test_training_paths_run_on_cpu_at_toy_size(tmp_path: Path):
    """The end-to-end and 2-epoch code, on CPU (fp32, no GPU decoding), alexnet at 224."""
    cfg = GpuCheckConfig(
        device="cpu",
        batch_size=4,
        train_warmup=1,
        train_steps=2,
        workers=1,
        epoch_batch_size=6,
        timeout_s=300,
    )
    tree = gpu_check.make_prepared_tree(tmp_path / "tree", cfg.images)  # 12 train, 4 val
    write_shards(tree, tmp_path / "shards", workers=1, progress=False)
    rows = gpu_check.end_to_end_rows(tree, tmp_path / "shards", cfg)
    assert [r["ok"] for r in rows] == [True, True], rows
    assert all(r["images_per_s"] > 0 for r in rows)
    row = gpu_check.train_and_eval(tree, tmp_path / "runs", cfg)
    assert row["ok"], row["problems"]
    assert row["val/acc_top1"] == pytest.approx(row["eval/acc_top1"], abs=0.02)
