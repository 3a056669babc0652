"""What every `make bench` measurement shares: its config, timers, generated images
and the machine's description."""

from __future__ import annotations

import functools
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from alexnet_lab.bench.paired import Budget

REPO = Path(__file__).resolve().parents[3]

TARGETS = {
    "pipeline_speedup_vs_torchvision": 2.5,
    "pipeline_vs_decode_only": 0.7,
    "prepared_speedup_vs_torchvision": 5.0,
    "loop_vs_raw_pytorch": 0.97,
    "stream_vs_folder": 1.0,  # LitData shards / folder tree, same images (stream.py)
}
# A default callback that costs more than this fraction of a step is named in the loop table.
CALLBACK_COST_LIMIT = 0.01
INPUT_SIZES = {"alexnet": 224, "alexnet_owt": 224, "alexnet_small": 32}


@dataclass
class ModelCase:
    arch: str
    batch_size: int
    dtype: str = "fp32"  # fp32 | bf16 (autocast)
    channels_last: bool = False
    compile: bool = False


@dataclass
class BenchConfig:
    quick: bool = False
    device: str = "cpu"
    root: str | None = None  # a folder of JPEGs (ImageNet layout) instead of generated ones
    image_size: tuple[int, int] = (500, 375)  # generated images, width x height
    num_images: int = 400
    batch_size: int = 64
    # Paired rounds per comparison (paired.py): at least min_rounds, then more until every
    # ratio is known to ±half_width or the next round would pass budget_s (wall seconds).
    min_rounds: int = 4
    max_rounds: int = 60
    budget_s: float = 180.0
    loop_budget_s: float = 300.0  # 12 configurations a round: the loop gets more time
    half_width: float = 0.03
    loop_arch: str = "alexnet_small"
    loop_batch_size: int = 64
    loop_steps: int = 10
    loop_warmup: int = 2
    loop_profile_steps: int = 40  # the hook-profiled run: long enough for the stall guard
    model_steps: int = 3
    model_warmup: int = 1
    model_repeats: int = 2
    models: list[ModelCase] = field(default_factory=list)
    profile: bool = False

    @classmethod
    def preset(cls, quick: bool, device: str) -> BenchConfig:
        if quick:  # toy sizes: every measurement runs, in seconds
            return cls(
                quick=True,
                device=device,
                image_size=(160, 120),
                num_images=16,
                batch_size=8,
                min_rounds=2,
                max_rounds=2,
                budget_s=10.0,
                loop_budget_s=10.0,
                loop_batch_size=8,
                loop_steps=3,
                loop_warmup=1,
                loop_profile_steps=20,
                model_steps=1,
                model_warmup=1,
                model_repeats=1,
                models=[
                    ModelCase("alexnet_small", 4, dtype, cl)
                    for dtype in ("fp32", "bf16")
                    for cl in (False, True)
                ],
            )
        if device == "cuda":
            models = [
                ModelCase(arch, batch, dtype, cl, compiled)
                for arch in INPUT_SIZES
                for batch in (128, 256, 512)
                for dtype in ("fp32", "bf16")
                for cl in (False, True)
                for compiled in ((False, True) if batch == 256 else (False,))
            ]
            return cls(
                device=device,
                loop_arch="alexnet",
                loop_batch_size=256,
                loop_steps=30,
                loop_warmup=10,
                model_steps=20,
                model_warmup=5,
                model_repeats=5,
                models=models,
            )
        # CPU: bf16 has no native kernels on most CPUs (about 10x slower than fp32
        # here) and inductor takes minutes per graph, so those get one case each.
        models = [
            *(ModelCase("alexnet_small", b, "fp32", cl) for b in (64, 256) for cl in (False, True)),
            ModelCase("alexnet_small", 64, "bf16"),
            ModelCase("alexnet_small", 256, "fp32", compile=True),
            *(
                ModelCase(arch, b, "fp32", cl)
                for arch in ("alexnet", "alexnet_owt")
                for b in (8, 16)
                for cl in (False, True)
            ),
            ModelCase("alexnet", 2, "bf16"),
            ModelCase("alexnet_owt", 2, "bf16"),
        ]
        return cls(device=device, models=models, model_steps=2)

    def budget(self, seconds: float | None = None) -> Budget:
        seconds = self.budget_s if seconds is None else seconds
        return Budget(self.min_rounds, self.max_rounds, seconds, self.half_width)


# --------------------------------------------------------------------------- timing


def median_rates(
    contenders: dict[str, Callable[[], int]], repeats: int, clock: Callable[[], float]
) -> dict[str, float]:
    """Items per second of each contender: interleaved repeats, median. Each callable
    does one pass and returns how many items it processed."""
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = clock()
            count = run()
            rates[name].append(count / max(clock() - start, 1e-9))
    return {name: statistics.median(values) for name, values in rates.items()}


def make_clock(device: str) -> Callable[[], float]:
    if device == "cuda":

        def clock() -> float:
            torch.cuda.synchronize()
            return time.perf_counter()

        return clock
    return time.process_time


# ------------------------------------------------------------------ generated images


def imagenet_like(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A photo-like image: smooth colour regions, mid-frequency texture and sensor-like
    noise, so a JPEG of it is about the size of an ImageNet photo (~70-100 KB at
    500x375, quality 90) and decodes at about the same speed."""
    base = rng.integers(0, 256, (rng.integers(4, 12), rng.integers(4, 12), 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(base).resize((width, height), Image.BICUBIC), np.float32)
    texture = rng.integers(0, 256, (max(height // 8, 1), max(width // 8, 1), 3), dtype=np.uint8)
    texture = Image.fromarray(texture).resize((width, height), Image.BILINEAR)
    image += 0.6 * (np.asarray(texture, np.float32) - 128) + rng.normal(0, 12, image.shape)
    return Image.fromarray(image.clip(0, 255).astype(np.uint8))


def make_jpeg_tree(
    root: Path, count: int, size: tuple[int, int], quality: int = 90, classes: int = 4
) -> Path:
    """root/{train,val}/<class>/*.JPEG; files already there are kept (the tree is cached)."""
    rng_seed = 0
    for split, n in (("train", count), ("val", max(classes, count // 8))):
        for i in range(n):
            path = root / split / f"class_{i % classes:02d}" / f"{split}_{i:05d}.JPEG"
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([rng_seed, i, split == "val"])
            tmp = path.with_name(f".{path.name}.tmp")
            imagenet_like(rng, *size).save(tmp, "JPEG", quality=quality)
            os.replace(tmp, path)
    return root


def machine_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = names[0] if names else info["cpu"]
    except OSError:
        pass
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def git_commit() -> str | None:
    """The checkout's commit (with '+' when it has uncommitted changes), or None."""
    try:
        run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=10)
        head = run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO).stdout.strip()
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+" if dirty.strip() else "")) or None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
