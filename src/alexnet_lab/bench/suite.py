"""`make bench`: how fast the input pipeline, `prepare`, the training loop and the
network are, as ratios measured side by side in one run.

Shared machines are noisy, so every ratio comes from paired, interleaved rounds and is
given with its 95% interval and a verdict against its goal (paired.py); `make bench` exits
non-zero only when some ratio's whole interval lies below its goal. On CPU, work is timed
in process CPU seconds with one intra-op thread: a rate per core (a DataLoader worker runs
one thread too). On a GPU, model steps are timed with CUDA events after a warm-up.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from alexnet_lab.bench.common import (
    CALLBACK_COST_LIMIT,
    TARGETS,
    BenchConfig,
    git_commit,
    load_average,
    machine_info,
    make_jpeg_tree,
)
from alexnet_lab.bench.loop_callbacks import format_profile_lines
from alexnet_lab.bench.paired import FAILS, decided_failures, describe, note
from alexnet_lab.bench.pipeline import bench_pipeline, bench_prepare
from alexnet_lab.bench.stream import bench_stream_vs_folder, format_stream_lines
from alexnet_lab.bench.training import bench_loop, bench_models


def run_bench(cfg: BenchConfig, data_dir: Path, log: Callable[[str], None] = print) -> dict:
    torch.set_num_threads(1)  # per-core figures; a DataLoader worker has one thread too
    # A Trainer per run; random labels, which the stall guard rightly calls stalled.
    for name in (
        "lightning",
        "lightning.pytorch",
        "lightning.fabric",
        "alexnet_lab.training.diagnostics",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Lightning's notes on a Trainer that only trains (no validation, so no monitored metric).
    quiet = "validation_step|LeafSpec|decoding|could not find the monitored key|Checkpoint dir"
    warnings.filterwarnings("ignore", message=f".*({quiet}).*")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA GPU here.")
    started = time.time()
    load_before = load_average()
    commit = git_commit()  # the code that runs: imported now, whatever is edited meanwhile
    if cfg.root:
        root = Path(cfg.root).expanduser()
    else:
        w, h = cfg.image_size
        root = data_dir / f"jpegs-{w}x{h}-q90-n{cfg.num_images}"
        log(f"generating {cfg.num_images} ImageNet-like JPEGs ({w}x{h}, q90) in {root} ...")
        make_jpeg_tree(root, cfg.num_images, cfg.image_size)
    prepared = data_dir / f"{root.name}-prepared"

    results: dict[str, Any] = {"mode": "quick" if cfg.quick else "full"}
    log("prepare ...")
    results["prepare"] = bench_prepare(root, prepared)
    log("input pipeline ...")
    results["pipeline"] = bench_pipeline(cfg, root, prepared)
    log("shards vs folder ...")
    shards = data_dir / f"{prepared.name}-shards"
    results["stream"] = bench_stream_vs_folder(
        prepared, shards, cfg.batch_size, budget=cfg.budget()
    )
    log("training loop: default callbacks against raw PyTorch; then each removed in turn ...")
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as run_dir:  # its checkpoints
        results["loop"] = bench_loop(
            cfg, cfg.budget(), cfg.budget(cfg.loop_budget_s), Path(run_dir)
        )
    results["loop_callbacks"] = results["loop"].pop("loop_callbacks")
    log(f"model steps ({len(cfg.models)} cases) ...")
    results["models"] = bench_models(cfg)
    ratios = {
        **results["pipeline"].pop("ratios"),
        **results["stream"].pop("ratios"),
        "loop_vs_raw_pytorch": results["loop"].pop("loop_vs_raw_pytorch"),
    }
    results.update(ratios)  # each ratio's object under its own name, at the top
    results["ratios"] = [*TARGETS, *(k for k in ratios if k not in TARGETS)]
    results["targets"] = TARGETS
    results["machine"] = machine_info(cfg.device)
    results["conditions"] = {
        "clock": "process CPU time, 1 thread" if cfg.device == "cpu" else "CUDA events/sync",
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "commit": commit,
        "wall_s": round(time.time() - started, 1),
        "rounds": "paired, interleaved; each ratio's 95% t-interval on the log pair ratios",
    }
    results["config"] = {k: v for k, v in asdict(cfg).items() if k != "models"}
    return results


def format_ratio_lines(results: dict[str, Any]) -> list[str]:
    half_width = results["config"]["half_width"]
    lines = [f"  {'ratio':52s} {'value [95% interval] ±half-width, pairs':44s} goal     verdict"]
    for key in results["ratios"]:
        r = results[key]
        goal = f">= {r['goal']:<5}" if r["goal"] is not None else ""
        verdict = " ".join(filter(None, [r["verdict"] or "", note(r, half_width)]))
        lines.append(f"  {key:52s} {describe(r):44s} {goal:8s} {verdict}")
    return lines


def format_loop_lines(results: dict[str, Any]) -> list[str]:
    loop, head = results["loop"], results["loop"]["headline"]
    lines = [
        "",
        f"training loop ({loop['arch']}, batch {loop['batch_size']}, {loop['timed_steps']} "
        f"timed steps a run): loop_vs_raw_pytorch above from {head['rounds']} rounds of its "
        f"own (stopped: {head['stopped']}); the table from {loop['rounds']} rounds of every "
        f"configuration (stopped: {loop['stopped']}): Lightning with the default callbacks, "
        f"each removed in turn, and none, against raw PyTorch; 'cost' is what leaving that "
        f"one out gains (1 - default / this), flagged when its interval lies above "
        f"{CALLBACK_COST_LIMIT:.0%} of a step",
        f"  {'configuration':34s} {'vs raw PyTorch [95%]':40s} {'cost [95%]':24s}",
    ]
    for row in results["loop_callbacks"]:
        vs_raw = row["vs_raw_pytorch"]
        text = describe(vs_raw) + (f" {vs_raw['verdict']}" if vs_raw["verdict"] else "")
        cost = ""
        if row["default_vs_this"] is not None:
            d = row["default_vs_this"]
            cost = f"{1 - d['value']:+.1%}"
            if d["low"] is not None:
                cost += f" [{1 - d['high']:+.1%}, {1 - d['low']:+.1%}]"
            if d["verdict"] == FAILS:
                cost += f"  > {CALLBACK_COST_LIMIT:.0%}"
        lines.append(f"  {row['configuration']:34s} {text:40s} {cost}")
    return lines + format_profile_lines(loop["callback_profile"])


def format_table(results: dict[str, Any]) -> str:
    pipe, models = results["pipeline"], results["models"]
    m = results["machine"]
    lines = [
        f"AlexNet Lab bench ({results['mode']}) on {m.get('gpu') or m['cpu']}, "
        f"{results['conditions']['clock']}, load {results['conditions']['load_average_before']}",
        "",
        "ratios: paired interleaved rounds; meets: the interval's low end reaches the goal, "
        "fails: its high end is below it",
        *format_ratio_lines(results),
    ]
    if results["mode"] == "quick":
        lines.append("  (--quick: toy sizes; the verdicts mean nothing and never fail the run)")
    lines += ["", "input pipeline, images/s per core (worker side; +norm: incl. CPU normalise)"]
    for name, rate in pipe["images_per_s_per_core"].items():
        extra = pipe["images_per_s_per_core_incl_cpu_normalize"].get(name)
        lines.append(f"  {name:20s} {rate:8.1f}" + (f"   +norm {extra:8.1f}" if extra else ""))
    if "gpu_decode_images_per_s" in pipe:
        lines.append(f"  {'gpu_decode (cuda)':20s} {pipe['gpu_decode_images_per_s']:8.1f}")
    lines += format_stream_lines(results["stream"])
    p = results["prepare"]
    lines += [
        "",
        f"prepare: {p['converted']} images, {p['images_per_s']} images/s with "
        f"{p['workers']} processes, {p['images_per_s_per_core']} images/s per core",
        *format_loop_lines(results),
        "",
        f"model steps (fwd+bwd+SGD); matmul TFLOP/s: {models['matmul_tflop_per_s']}",
        f"  {'arch':14s} {'batch':>5s} {'dtype':5s} {'CL':>3s} {'comp':>4s} "
        f"{'img/s':>9s} {'ms/step':>9s} {'TFLOP/s':>8s} {'of mm':>6s}",
    ]
    for r in models["rows"]:
        lines.append(
            f"  {r['arch']:14s} {r['batch_size']:5d} {r['dtype']:5s} "
            f"{'on' if r['channels_last'] else 'off':>3s} {'on' if r['compile'] else 'off':>4s} "
            f"{r['images_per_s']:9.1f} {r['step_ms']:9.1f} {r['tflop_per_s']:8.3f} "
            f"{r['fraction_of_matmul_rate']:6.2f}"
        )
    if "profile" in pipe:
        lines += ["", "worker-side profile (one pass, by own time):", *pipe["profile"]]
    return "\n".join(lines)


def exit_status(results: dict[str, Any]) -> int:
    """1 when a ratio with a goal decidedly fails it (its interval's upper end is below the
    goal) in a full run, else 0: an undecided ratio is reported, never a failure, and
    --quick's toy sizes judge nothing."""
    if results["mode"] == "quick":
        return 0
    return 1 if decided_failures({k: results[k] for k in TARGETS}) else 0


def write_results(results: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    path = out_dir / f"bench-{results['mode']}-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / f"latest-{results['mode']}.json").write_text(json.dumps(results, indent=2) + "\n")
    return path
