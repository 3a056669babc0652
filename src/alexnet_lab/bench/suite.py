"""`make bench`: how fast the input pipeline, `prepare`, the training loop and the
network are, as ratios measured side by side in one run.

Shared machines are noisy, so every comparison interleaves its contenders
(A, B, C, A, B, C, ...) and takes medians. On CPU, work is timed in process CPU
seconds with one intra-op thread: that is a rate per core (a DataLoader worker
runs one thread too), and it does not move when other jobs share the machine.
On a GPU, model steps are timed with CUDA events after a warm-up.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from alexnet_lab.bench.common import (
    TARGETS,
    BenchConfig,
    load_average,
    machine_info,
    make_jpeg_tree,
)
from alexnet_lab.bench.pipeline import bench_pipeline, bench_prepare
from alexnet_lab.bench.stream import bench_stream_vs_folder, format_stream_lines
from alexnet_lab.bench.training import bench_loop, bench_models


def run_bench(cfg: BenchConfig, data_dir: Path, log: Callable[[str], None] = print) -> dict:
    torch.set_num_threads(1)  # per-core figures; a DataLoader worker has one thread too
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # a Trainer per repeat
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*(validation_step|LeafSpec|decoding).*")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA GPU here.")
    started = time.time()
    load_before = load_average()
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
    results["stream"] = bench_stream_vs_folder(prepared, shards, cfg.batch_size, cfg.repeats)
    log("training loop ...")
    results["loop"] = bench_loop(cfg)
    log(f"model steps ({len(cfg.models)} cases) ...")
    results["models"] = bench_models(cfg)
    for key in TARGETS:
        sources = {"loop_vs_raw_pytorch": results["loop"], "stream_vs_folder": results["stream"]}
        source = sources.get(key, results["pipeline"])
        results[key] = round(source[key], 3)
    results["targets"] = TARGETS
    results["machine"] = machine_info(cfg.device)
    results["conditions"] = {
        "clock": "process CPU time, 1 thread" if cfg.device == "cpu" else "CUDA events/sync",
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "wall_s": round(time.time() - started, 1),
    }
    results["config"] = {k: v for k, v in asdict(cfg).items() if k != "models"}
    return results


def format_table(results: dict[str, Any]) -> str:
    pipe, loop, models = results["pipeline"], results["loop"], results["models"]
    m = results["machine"]
    lines = [
        f"AlexNet Lab bench ({results['mode']}) on {m.get('gpu') or m['cpu']}, "
        f"{results['conditions']['clock']}, load {results['conditions']['load_average_before']}",
        "",
        "ratio                                   measured  target",
    ]
    for key, target in TARGETS.items():
        ok = "ok" if results[key] >= target else "BELOW"
        lines.append(f"  {key:36s} {results[key]:8.2f}  >= {target:<5} {ok}")
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
        "",
        f"training loop ({loop['arch']}, batch {loop['batch_size']}), images/s: "
        + ", ".join(f"{k} {v}" for k, v in loop["images_per_s"].items()),
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


def write_results(results: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    path = out_dir / f"bench-{results['mode']}-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / f"latest-{results['mode']}.json").write_text(json.dumps(results, indent=2) + "\n")
    return path
