"""`make gpu-check`: every GPU code path of the project, run and measured in a few minutes.

On a machine with a CUDA GPU it prints one table and writes it as JSON under outputs/bench/:

- model only: forward + backward + SGD images/s of model=alexnet at 224 in fp32, bf16,
  bf16 + channels_last and bf16 + compile, each as a fraction of the measured bf16
  matmul rate (FLOPs counted by torch's FlopCounterMode, as `make bench` does);
- end to end: the project's Lightning training loop (bf16-mixed) fed from prepared
  256x256 JPEGs decoded by CPU workers, from the same files decoded on the GPU
  (data.decode_device=cuda), and from the same images as LitData shards;
- a 2-epoch `src/train.py` run on the GPU and `src/eval.py` of its last checkpoint,
  whose metrics.json files are checked (completed, step count, finite losses, eval
  equal to the run's last validation).

Without a GPU it says so in one line and exits 0. Exit status 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[3]
MODEL_CASES = (  # (row label, dtype, channels_last, compile)
    ("fp32", "fp32", False, False),
    ("bf16", "bf16", False, False),
    ("bf16 + channels_last", "bf16", True, False),
    ("bf16 + compile", "bf16", False, True),
)
STORED_SIZE = 256  # the prepared form (prepare's size)


@dataclass
class GpuCheckConfig:
    batch_size: int = 256
    model_steps: int = 20
    model_warmup: int = 3
    model_repeats: int = 3
    train_warmup: int = 5  # end-to-end steps before timing (workers start, cudnn picks)
    train_steps: int = 20
    workers: int = 0  # 0: one per core, at most 16
    gpu_decode_workers: int = 4  # they only read files
    epochs: int = 2
    epoch_batch_size: int = 128
    timeout_s: int = 240  # for each of the train/eval subprocesses
    # "cpu" runs the same code at toy sizes where there is no GPU (the tests do): no
    # GPU decoding, fp32 instead of bf16-mixed, trainer=cpu.
    device: str = "cuda"

    @property
    def images(self) -> int:
        return self.batch_size * (self.train_warmup + self.train_steps)

    def cpu_workers(self) -> int:
        return self.workers or min(16, os.cpu_count() or 1)


def no_gpu_line() -> str | None:
    """The one line printed without a GPU (None when there is one)."""
    if torch.cuda.is_available():
        return None
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return (
        f"gpu-check: no CUDA GPU visible to PyTorch {torch.__version__} ({build}) on this "
        f"machine; nothing to check."
    )


# ------------------------------------------------------------------------- images


def _write_image(job: tuple[Path, int, bool]) -> None:
    from alexnet_lab.bench.common import imagenet_like

    path, index, val = job
    if path.exists():
        return
    import numpy as np

    rng = np.random.default_rng([0, index, val])
    tmp = path.with_name(f".{path.name}.tmp")
    imagenet_like(rng, STORED_SIZE, STORED_SIZE).save(tmp, "JPEG", quality=90)
    os.replace(tmp, path)


def make_prepared_tree(root: Path, count: int, classes: int = 4) -> Path:
    """root/{train,val}/<class>/*.JPEG at the prepared size, written in parallel (cached)."""
    jobs = []
    for split, n in (("train", count), ("val", max(classes, count // 8))):
        for i in range(n):
            path = root / split / f"class_{i % classes:02d}" / f"{split}_{i:05d}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((path, i, split == "val"))
    with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
        pool.map(_write_image, jobs, chunksize=32)
    return root


# ------------------------------------------------------------------ model only


def model_rows(cfg: GpuCheckConfig) -> tuple[dict[str, float], list[dict[str, Any]]]:
    from alexnet_lab.bench.common import BenchConfig, ModelCase
    from alexnet_lab.bench.training import matmul_rate, model_step_rate

    peak = {
        "bf16": matmul_rate(cfg.device, torch.bfloat16),
        "fp32": matmul_rate(cfg.device, torch.float32),
    }
    bench_cfg = BenchConfig(
        device=cfg.device,
        model_steps=cfg.model_steps,
        model_warmup=cfg.model_warmup,
        model_repeats=cfg.model_repeats,
    )
    rows = []
    for label, dtype, channels_last, compiled in MODEL_CASES:
        case = ModelCase("alexnet", cfg.batch_size, dtype, channels_last, compiled)
        row = run_row(f"model {label}", lambda case=case: model_step_rate(case, bench_cfg))
        if "tflop_per_s" in row:
            row["fraction_of_bf16_matmul"] = round(row["tflop_per_s"] * 1e12 / peak["bf16"], 3)
        rows.append(row)
    return {k: round(v / 1e12, 2) for k, v in peak.items()}, rows


# ------------------------------------------------------------------ end to end


def train_rate(datamodule, cfg: GpuCheckConfig) -> dict[str, Any]:
    """images/s of the project's training loop (bf16-mixed, model=alexnet) on `datamodule`,
    timed over train_steps after train_warmup steps, validation off."""
    from omegaconf import OmegaConf

    from alexnet_lab.bench.common import make_clock
    from alexnet_lab.bench.training import StepTimer, timing_trainer
    from alexnet_lab.training.module import AlexNetClassifier

    torch.manual_seed(0)
    net = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" / "alexnet.yaml"))
    optimizer = {"_target_": "torch.optim.SGD", "lr": 0.01, "momentum": 0.9}
    model = AlexNetClassifier(net, optimizer, class_names=datamodule.classes)
    last = cfg.train_warmup + cfg.train_steps - 1
    timer = StepTimer(cfg.train_warmup, last, make_clock(cfg.device))
    precision = "bf16-mixed" if cfg.device == "cuda" else "32-true"
    trainer = timing_trainer(cfg.device, last + 1, timer, precision)
    trainer.fit(model, datamodule=datamodule)
    seconds = timer.end - timer.start
    return {"images_per_s": round(cfg.train_steps * cfg.batch_size / seconds, 1)}


def end_to_end_rows(tree: Path, shards: Path, cfg: GpuCheckConfig) -> list[dict[str, Any]]:
    from alexnet_lab.data import ImageFolderDataModule
    from alexnet_lab.data.stream import StreamingDataModule

    common = {"crop_size": 224, "batch_size": cfg.batch_size, "pin_memory": True}
    workers = cfg.cpu_workers()
    cases: list[tuple[str, Callable[[], Any]]] = [
        (
            f"train: JPEG folder, CPU decode ({workers} workers)",
            lambda: ImageFolderDataModule(root=str(tree), num_workers=workers, **common),
        ),
        (
            f"train: JPEG folder, data.decode_device=cuda ({cfg.gpu_decode_workers} workers)",
            lambda: ImageFolderDataModule(
                root=str(tree), num_workers=cfg.gpu_decode_workers, decode_device="cuda", **common
            ),
        ),
        (
            f"train: LitData shards, CPU decode ({workers} workers)",
            lambda: StreamingDataModule(
                root=str(shards), num_workers=workers, persistent_workers=False, **common
            ),
        ),
    ]
    if cfg.device != "cuda":
        del cases[1]
    return [run_row(name, lambda make=make: train_rate(make(), cfg)) for name, make in cases]


# ------------------------------------------------------------ 2 epochs + eval


def check_run_metrics(
    train: dict[str, Any], evaluation: dict[str, Any] | None, epochs: int, steps_per_epoch: int
) -> list[str]:
    """What is wrong with a finished train run's and its eval's metrics.json (empty: ok)."""
    problems = []
    if train.get("status") != "completed":
        problems.append(f"train status {train.get('status')!r}: {train.get('error', '')}"[:300])
        return problems
    if train.get("epochs") != epochs:
        problems.append(f"train ran {train.get('epochs')} epochs, expected {epochs}")
    if train.get("global_step") != epochs * steps_per_epoch:
        problems.append(
            f"train ran {train.get('global_step')} steps, expected {epochs * steps_per_epoch}"
        )
    for key in ("train/loss", "val/loss", "val/acc_top1"):
        value = train.get(key)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(f"train {key} = {value!r}, expected a finite number")
    if not train.get("last_checkpoint"):
        problems.append("train wrote no last checkpoint")
    if evaluation is None:
        return problems
    if evaluation.get("status") != "completed":
        problems.append(f"eval status {evaluation.get('status')!r}: {evaluation.get('error', '')}")
        return problems
    # Same weights, same images, same centre crop: the run's last validation. bf16
    # autocast in both, so equal up to the order of floating-point sums.
    for key in ("acc_top1", "loss"):
        ours, theirs = evaluation.get(f"eval/{key}"), train.get(f"val/{key}")
        if not isinstance(ours, (int, float)) or abs(ours - theirs) > 0.02 * max(1, abs(theirs)):
            problems.append(f"eval/{key} = {ours!r} but the run's last val/{key} = {theirs!r}")
    return problems


def run_script(script: str, overrides: list[str], run_dir: Path, timeout_s: int) -> dict:
    env = {**os.environ, "WANDB_MODE": "offline"}
    command = [sys.executable, str(REPO / "src" / script), *overrides, f"hydra.run.dir={run_dir}"]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout_s, cwd=REPO
    )
    metrics_file = run_dir / "metrics.json"
    if not metrics_file.is_file():
        tail = (result.stderr or result.stdout)[-600:]
        return {"status": f"no metrics.json (exit {result.returncode})", "error": tail}
    return json.loads(metrics_file.read_text())


def train_and_eval(tree: Path, work: Path, cfg: GpuCheckConfig) -> dict[str, Any]:
    start = time.perf_counter()
    tree, work = tree.resolve(), work.resolve()  # the scripts run in the repository
    train_images = sum(1 for _ in (tree / "train").rglob("*.JPEG"))
    steps_per_epoch = math.ceil(train_images / cfg.epoch_batch_size)
    trainer = "trainer=gpu" if cfg.device == "cuda" else "trainer=cpu"
    common = [trainer, "data=folder", f"data.root={tree}", "logger=csv"]
    train_dir, eval_dir = work / "train", work / "eval"
    train = run_script(
        "train.py",
        [
            *common,
            "model=alexnet",
            # Keep each epoch's checkpoint in place of the last: Lightning 2.6 rewrites
            # last.ckpt only at a step where it saved another checkpoint, so with a monitor
            # that did not improve, last.ckpt would hold an earlier epoch than the run's end.
            "callbacks.model_checkpoint.monitor=null",
            f"trainer.max_epochs={cfg.epochs}",
            f"data.batch_size={cfg.epoch_batch_size}",
            f"data.num_workers={cfg.cpu_workers()}",
        ],
        train_dir,
        cfg.timeout_s,
    )
    evaluation = None
    if train.get("last_checkpoint"):
        evaluation = run_script(
            "eval.py",
            [trainer, f"ckpt_path={train['last_checkpoint']}", "data.num_workers=4"],
            eval_dir,
            cfg.timeout_s,
        )
    problems = check_run_metrics(train, evaluation, cfg.epochs, steps_per_epoch)
    return {
        "name": f"train {cfg.epochs} epochs + eval (metrics.json)",
        "ok": not problems,
        "problems": problems,
        "val/acc_top1": train.get("val/acc_top1"),
        "eval/acc_top1": (evaluation or {}).get("eval/acc_top1"),
        "train/images_per_sec": train.get("train/images_per_sec"),
        "run_dirs": [str(train_dir), str(eval_dir)],
        "wall_s": round(time.perf_counter() - start, 1),
    }


# ------------------------------------------------------------------------ driver


def run_row(name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One measurement; an exception becomes a failed row instead of ending the check."""
    start = time.perf_counter()
    try:
        row = {"name": name, "ok": True, **measure()}
    except Exception as err:  # a broken GPU path is what this command exists to find
        traceback.print_exc()
        row = {"name": name, "ok": False, "problems": [f"{type(err).__name__}: {err}"[:300]]}
    row["wall_s"] = round(time.perf_counter() - start, 1)
    return row


def run_gpu_check(cfg: GpuCheckConfig, data_dir: Path, log=print) -> dict[str, Any]:
    from alexnet_lab.bench.common import machine_info
    from alexnet_lab.data.shards import write_shards

    started = time.perf_counter()
    tree = data_dir / f"prepared-{STORED_SIZE}-n{cfg.images}"
    shards = data_dir / f"shards-{STORED_SIZE}-n{cfg.images}"
    log(f"gpu-check: {cfg.images} prepared JPEGs in {tree}, shards in {shards} ...")
    make_prepared_tree(tree, cfg.images)
    write_shards(tree, shards, progress=False)
    log("gpu-check: matmul rates and model steps ...")
    matmul, rows = model_rows(cfg)
    log("gpu-check: end-to-end training rates ...")
    rows += end_to_end_rows(tree, shards, cfg)
    log(f"gpu-check: {cfg.epochs}-epoch train + eval ...")
    rows.append(train_and_eval(tree, data_dir / "runs" / time.strftime("%Y%m%d-%H%M%S"), cfg))
    return {
        "machine": machine_info(cfg.device),
        "cuda": torch.version.cuda,
        "matmul_tflop_per_s": matmul,
        "rows": rows,
        "ok": all(row["ok"] for row in rows),
        "config": asdict(cfg),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def format_gpu_table(results: dict[str, Any]) -> str:
    matmul = results["matmul_tflop_per_s"]
    lines = [
        f"gpu-check on {results['machine'].get('gpu')} (torch {results['machine']['torch']}, "
        f"CUDA {results.get('cuda')}), {results['wall_s']:.0f} s; measured matmul TFLOP/s: "
        f"bf16 {matmul['bf16']}, fp32 {matmul['fp32']}",
        f"model=alexnet at 224, batch {results['config']['batch_size']}",
        "",
        f"  {'check':58s} {'images/s':>9s} {'of bf16 mm':>10s}  result",
    ]
    for row in results["rows"]:
        rate = row.get("images_per_s")
        fraction = row.get("fraction_of_bf16_matmul")
        if row["ok"]:
            note = "ok"
            if "val/acc_top1" in row:
                note += (
                    f" (val/acc_top1 {row['val/acc_top1']:.3f} = eval {row['eval/acc_top1']:.3f})"
                )
        else:
            note = "FAILED: " + "; ".join(row.get("problems", []))
        lines.append(
            f"  {row['name']:58s} {f'{rate:.1f}' if rate else '-':>9s} "
            f"{f'{fraction:.3f}' if fraction is not None else '-':>10s}  {note}"
        )
    lines += ["", "all checks passed" if results["ok"] else "SOME CHECKS FAILED"]
    return "\n".join(lines)


def write_results(results: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2) + "\n"
    path = out_dir / f"gpu-check-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    path.write_text(text)
    (out_dir / "latest-gpu-check.json").write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(os.environ.get("ALEXNET_LAB_ROOT", "."))
    parser.add_argument("--out", type=Path, default=root / "outputs" / "bench")
    parser.add_argument("--data-dir", type=Path, default=root / "data" / "gpu-check")
    parser.add_argument("--batch-size", type=int, default=GpuCheckConfig.batch_size)
    args = parser.parse_args(argv)
    line = no_gpu_line()
    if line is not None:
        print(line)
        return 0
    results = run_gpu_check(GpuCheckConfig(batch_size=args.batch_size), args.data_dir)
    print(format_gpu_table(results))
    print(f"\nwritten: {write_results(results, args.out)}")
    return 0 if results["ok"] else 1
