"""`make bench`, parts 1 and 2: the input pipeline against torchvision's recipe and a
decode-only pass, and `prepare` (the paper's offline resize) per core."""

from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader

from alexnet_lab.bench.common import TARGETS, BenchConfig, make_clock, median_rates
from alexnet_lab.bench.paired import Ratio, ratio_results, run_rounds, timed
from alexnet_lab.data import ImageFolderDataModule
from alexnet_lab.data.gpu_decode import collate_encoded, decode_batch
from alexnet_lab.data.prepare import prepare_tree
from alexnet_lab.data.transforms import IMAGENET_MEAN, IMAGENET_STD, read_image_rgb

# ---------------------------------------------------------------------- 1. pipeline


def torchvision_recipe_loader(train_dir: Path, batch_size: int) -> DataLoader:
    """The standard recipe: ImageFolder + PIL + per-sample float transforms."""
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    transform = T.Compose(
        [
            T.Resize(256),
            T.CenterCrop(256),
            T.RandomCrop(224),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return DataLoader(ImageFolder(str(train_dir), transform), batch_size=batch_size, shuffle=True)


class ProjectPass:
    """One epoch of the project's DataModule in this process (what one worker does),
    with its on-device step (float, normalise, PCA noise) timed on its own."""

    def __init__(self, name: str, root: Path, batch_size: int, device: str, clock):
        self.name = name
        self.dm = ImageFolderDataModule(
            root=str(root), crop_size=224, resize_size=256, batch_size=batch_size
        )
        self.dm.setup("fit")
        self.device, self.clock = torch.device(device), clock
        self.normalizer = self.dm.normalizer.to(self.device)

    def __call__(self) -> dict[str, float]:
        """One pass: images/s of the worker side alone, and with the device step."""
        count, device_seconds = 0, 0.0
        start = self.clock()
        for images, _ in self.dm.train_dataloader():
            count += len(images)
            begin = self.clock()
            self.normalizer(images.to(self.device), pca_noise=True)
            device_seconds += self.clock() - begin
        total = self.clock() - start
        return {
            self.name: count / max(total - device_seconds, 1e-9),
            f"{self.name}_incl_cpu_normalize": count / max(total, 1e-9),
        }

    def worker_only(self) -> int:
        return sum(len(images) for images, _ in self.dm.train_dataloader())


PIPELINE_RATIOS = {
    "pipeline_speedup_vs_torchvision": Ratio(
        "project", "torchvision_recipe", TARGETS["pipeline_speedup_vs_torchvision"]
    ),
    "pipeline_vs_decode_only": Ratio("project", "decode_only", TARGETS["pipeline_vs_decode_only"]),
    "prepared_speedup_vs_torchvision": Ratio(
        "prepared", "torchvision_recipe", TARGETS["prepared_speedup_vs_torchvision"]
    ),
    "pipeline_incl_cpu_normalize_speedup_vs_torchvision": Ratio(
        "project_incl_cpu_normalize", "torchvision_recipe"
    ),
    "prepared_incl_cpu_normalize_speedup_vs_torchvision": Ratio(
        "prepared_incl_cpu_normalize", "torchvision_recipe"
    ),
}


def bench_pipeline(
    cfg: BenchConfig, root: Path, prepared: Path, elapsed: Callable[[], float] = time.monotonic
) -> dict[str, Any]:
    clock = time.process_time  # the pipeline runs on the CPU whatever the device
    train_files = [str(p) for p in sorted((root / "train").rglob("*.JPEG"))]

    def decode_only() -> int:
        for path in train_files:
            read_image_rgb(path)  # torchvision's decoder: what the project path uses
        return len(train_files)

    def decode_only_pil() -> int:
        for path in train_files:
            with Image.open(path) as image:
                image.convert("RGB")
        return len(train_files)

    standard = torchvision_recipe_loader(root / "train", cfg.batch_size)

    def torchvision_pass() -> int:
        return sum(len(images) for images, _ in standard)

    project = ProjectPass("project", root, cfg.batch_size, "cpu", clock)
    contenders = {
        "decode_only": timed(decode_only, clock),
        "decode_only_pil": timed(decode_only_pil, clock),
        "torchvision_recipe": timed(torchvision_pass, clock),
        "project": project,
        "prepared": ProjectPass("prepared", prepared, cfg.batch_size, "cpu", clock),
    }
    for fn in contenders.values():  # warm the page cache and lazy imports
        fn()
    rounds = run_rounds(contenders, PIPELINE_RATIOS, cfg.budget(), elapsed)
    med = {name: statistics.median(v) for name, v in rounds.rates.items()}
    result = {
        "images": len(train_files),
        "image_size": list(cfg.image_size) if cfg.root is None else "from --root",
        "batch_size": cfg.batch_size,
        "rounds": rounds.count,
        "stopped": rounds.stopped,
        "seconds": round(rounds.seconds, 1),
        "images_per_s_per_core": {
            k: round(v, 1) for k, v in med.items() if not k.endswith("_incl_cpu_normalize")
        },
        "images_per_s_per_core_each_round": {
            k: [round(x, 1) for x in v] for k, v in rounds.rates.items()
        },
        "images_per_s_per_core_incl_cpu_normalize": {
            k.removesuffix("_incl_cpu_normalize"): round(v, 1)
            for k, v in med.items()
            if k.endswith("_incl_cpu_normalize")
        },
        "ratios": ratio_results(rounds, PIPELINE_RATIOS),
    }
    if cfg.device == "cuda":
        result["gpu_decode_images_per_s"] = bench_gpu_decode(root, cfg)
    if cfg.profile:
        result["profile"] = profile_pass(project.worker_only)
    return result


def bench_gpu_decode(root: Path, cfg: BenchConfig) -> float:
    """data.decode_device=cuda: batched nvJPEG decode + crop/flip on the GPU, images/s."""
    dm = ImageFolderDataModule(
        root=str(root), crop_size=224, resize_size=256, batch_size=cfg.batch_size,
        decode_device="cuda",
    )  # fmt: skip
    dm.setup("fit")
    batches = list(dm.train_dataloader())  # the files' bytes, read once
    assert dm.train_dataloader().collate_fn is collate_encoded
    transform = dm.device_transforms[0]

    def run() -> int:
        return sum(len(decode_batch(data, "cuda", transform)) for data, _ in batches)

    run()
    return round(median_rates({"gpu": run}, cfg.min_rounds, make_clock("cuda"))["gpu"], 1)


def profile_pass(run: Callable[[], int], top: int = 12) -> list[str]:
    """Where one pass of the worker-side path spends its time (cProfile, by own time)."""
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    return lines[start : start + top + 1]


# ----------------------------------------------------------------------- 2. prepare


def bench_prepare(root: Path, prepared: Path) -> dict[str, Any]:
    """Convert the generated tree from scratch (a cached copy would measure nothing)."""
    shutil.rmtree(prepared, ignore_errors=True)
    summary = prepare_tree(root, prepared, size=256, quality=90, progress=False)
    keys = ("converted", "failed", "workers", "wall_s", "images_per_s", "images_per_s_per_core")
    return {key: summary[key] for key in keys}
