"""`make bench`: how fast the input pipeline, `prepare`, the training loop and the
network are, as ratios measured side by side in one run.

Shared machines are noisy, so every comparison interleaves its contenders
(A, B, C, A, B, C, ...) and takes medians. On CPU, work is timed in process CPU
seconds with one intra-op thread: that is a rate per core (a DataLoader worker
runs one thread too), and it does not move when other jobs share the machine.
On a GPU, model steps are timed with CUDA events after a warm-up.
"""

from __future__ import annotations

import cProfile
import io
import json
import logging
import os
import platform
import pstats
import shutil
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from alexnet_lab.bench_stream import bench_stream_vs_folder, format_stream_lines
from alexnet_lab.data import ImageFolderDataModule
from alexnet_lab.data.prepare import prepare_tree
from alexnet_lab.data.transforms import IMAGENET_MEAN, IMAGENET_STD, read_image_rgb
from alexnet_lab.models import AlexNet
from alexnet_lab.module import AlexNetClassifier

TARGETS = {
    "pipeline_speedup_vs_torchvision": 2.5,
    "pipeline_vs_decode_only": 0.7,
    "prepared_speedup_vs_torchvision": 5.0,
    "loop_vs_raw_pytorch": 0.97,
    "stream_vs_folder": 1.0,  # LitData shards / folder tree, same images (bench_stream.py)
}
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
    repeats: int = 5
    loop_arch: str = "alexnet_small"
    loop_batch_size: int = 64
    loop_steps: int = 10
    loop_warmup: int = 2
    loop_repeats: int = 7
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
                repeats=2,
                loop_batch_size=8,
                loop_steps=3,
                loop_warmup=1,
                loop_repeats=2,
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
    then its on-device step (float, normalise, PCA noise) timed on its own."""

    def __init__(self, root: Path, batch_size: int, device: str, clock):
        self.dm = ImageFolderDataModule(
            root=str(root), crop_size=224, resize_size=256, batch_size=batch_size
        )
        self.dm.setup("fit")
        self.device, self.clock = torch.device(device), clock
        self.normalizer = self.dm.normalizer.to(self.device)
        self.device_seconds = 0.0

    def __call__(self) -> int:
        count = 0
        for images, _ in self.dm.train_dataloader():
            count += len(images)
            start = self.clock()
            self.normalizer(images.to(self.device), pca_noise=True)
            self.device_seconds += self.clock() - start
        return count

    def worker_only(self) -> int:
        return sum(len(images) for images, _ in self.dm.train_dataloader())


def bench_pipeline(cfg: BenchConfig, root: Path, prepared: Path) -> dict[str, Any]:
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

    project = ProjectPass(root, cfg.batch_size, "cpu", clock)
    on_prepared = ProjectPass(prepared, cfg.batch_size, "cpu", clock)
    # The device step is timed apart from the worker-side work of the same passes.
    rates: dict[str, list[float]] = {}
    device_rates: dict[str, list[float]] = {"project": [], "prepared": []}
    contenders = {
        "decode_only": decode_only,
        "decode_only_pil": decode_only_pil,
        "torchvision_recipe": torchvision_pass,
        "project": project,
        "prepared": on_prepared,
    }
    for fn in contenders.values():  # warm the page cache and lazy imports
        fn()
    for _ in range(cfg.repeats):
        for name, run in contenders.items():
            passes = {"project": project, "prepared": on_prepared}
            before = passes[name].device_seconds if name in passes else 0.0
            start = clock()
            count = run()
            total = clock() - start
            device = passes[name].device_seconds - before if name in passes else 0.0
            rates.setdefault(name, []).append(count / max(total - device, 1e-9))
            if name in passes:
                device_rates[name].append(count / max(total, 1e-9))
    med = {name: statistics.median(v) for name, v in rates.items()}
    with_device = {name: statistics.median(v) for name, v in device_rates.items()}
    result = {
        "images": len(train_files),
        "image_size": list(cfg.image_size) if cfg.root is None else "from --root",
        "batch_size": cfg.batch_size,
        "repeats": cfg.repeats,
        "images_per_s_per_core": {k: round(v, 1) for k, v in med.items()},
        "images_per_s_per_core_each_repeat": {
            k: [round(x, 1) for x in v] for k, v in rates.items()
        },
        "images_per_s_per_core_incl_cpu_normalize": {
            k: round(v, 1) for k, v in with_device.items()
        },
        "pipeline_speedup_vs_torchvision": med["project"] / med["torchvision_recipe"],
        "pipeline_vs_decode_only": med["project"] / med["decode_only"],
        "prepared_speedup_vs_torchvision": med["prepared"] / med["torchvision_recipe"],
        "pipeline_incl_cpu_normalize_speedup_vs_torchvision": (
            with_device["project"] / med["torchvision_recipe"]
        ),
        "prepared_incl_cpu_normalize_speedup_vs_torchvision": (
            with_device["prepared"] / med["torchvision_recipe"]
        ),
    }
    if cfg.device == "cuda":
        result["gpu_decode_images_per_s"] = bench_gpu_decode(root, cfg)
    if cfg.profile:
        result["profile"] = profile_pass(project.worker_only)
    return result


def bench_gpu_decode(root: Path, cfg: BenchConfig) -> float:
    """data.decode_device=cuda: batched nvJPEG decode + crop/flip on the GPU, images/s."""
    from alexnet_lab.data.gpu_decode import collate_encoded, decode_batch

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
    return round(median_rates({"gpu": run}, cfg.repeats, make_clock("cuda"))["gpu"], 1)


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


# ------------------------------------------------------------------- 3. the loop


class StepTimer(L.Callback):
    """Times the training steps after the warm-up ones, as the raw loop does."""

    def __init__(self, warmup: int, last: int, clock):
        self.warmup, self.last, self.clock = warmup, last, clock
        self.start = self.end = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = self.clock()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.last:  # the clock syncs a GPU: only at the two ends
            self.end = self.clock()


def loop_data(cfg: BenchConfig, num_classes: int) -> DataLoader:
    size = INPUT_SIZES[cfg.loop_arch]
    n = cfg.loop_batch_size * (cfg.loop_steps + cfg.loop_warmup)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, size, size, generator=g)
    targets = torch.randint(0, num_classes, (n,), generator=g)
    return DataLoader(TensorDataset(images, targets), batch_size=cfg.loop_batch_size)


def bench_loop(cfg: BenchConfig) -> dict[str, Any]:
    """The project's LightningModule under L.Trainer vs a hand-written loop: same net,
    optimizer, batches (in memory) and device; only the loop differs."""
    num_classes = 1000 if INPUT_SIZES[cfg.loop_arch] == 224 else 10
    net_cfg = {"_target_": "alexnet_lab.models.AlexNet", "arch": cfg.loop_arch}
    opt_cfg = {"_target_": "torch.optim.SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}
    loader = loop_data(cfg, num_classes)
    clock = make_clock(cfg.device)
    steps = cfg.loop_steps
    classes = [f"c{i}" for i in range(num_classes)]

    def lightning_run() -> tuple[int, float]:
        torch.manual_seed(0)
        model = AlexNetClassifier(net_cfg, opt_cfg, scheduler=None, class_names=classes)
        timer = StepTimer(cfg.loop_warmup, cfg.loop_warmup + steps - 1, clock)
        trainer = L.Trainer(
            accelerator="gpu" if cfg.device == "cuda" else "cpu",
            devices=1,
            max_steps=cfg.loop_warmup + steps,
            logger=False,
            callbacks=[timer],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
        )
        trainer.fit(model, train_dataloaders=loader)
        return steps * cfg.loop_batch_size, timer.end - timer.start

    def raw_run() -> tuple[int, float]:
        torch.manual_seed(0)
        device = torch.device(cfg.device)
        net = AlexNet(cfg.loop_arch, num_classes=num_classes).to(device).train()
        opt = torch.optim.SGD(net.parameters(), **{k: v for k, v in opt_cfg.items() if k[0] != "_"})
        start = 0.0
        for i, (x, y) in enumerate(loader):
            if i == cfg.loop_warmup:
                start = clock()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return steps * cfg.loop_batch_size, clock() - start

    rates: dict[str, list[float]] = {"lightning": [], "raw_pytorch": []}
    for _ in range(cfg.loop_repeats):
        for name, run in (("lightning", lightning_run), ("raw_pytorch", raw_run)):
            images, seconds = run()
            rates[name].append(images / max(seconds, 1e-9))
    med = {name: statistics.median(v) for name, v in rates.items()}
    return {
        "arch": cfg.loop_arch,
        "batch_size": cfg.loop_batch_size,
        "timed_steps": steps,
        "repeats": cfg.loop_repeats,
        "images_per_s": {k: round(v, 1) for k, v in med.items()},
        "images_per_s_each_repeat": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "loop_vs_raw_pytorch": med["lightning"] / med["raw_pytorch"],
    }


# ------------------------------------------------------------ 4. model throughput


def matmul_rate(device: str, dtype: torch.dtype, repeats: int = 3) -> float:
    """FLOP/s of a large square matmul: the card's (or core's) practical peak."""
    n = 8192 if device == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    clock = make_clock(device)
    inner = 10 if device == "cuda" else 1
    rates = []
    for _ in range(repeats):
        start = clock()
        for _ in range(inner):
            torch.mm(a, b)
        rates.append(2 * n**3 * inner / (clock() - start))
    return statistics.median(rates)


def model_step_rate(case: ModelCase, cfg: BenchConfig) -> dict[str, Any]:
    device = torch.device(cfg.device)
    size = INPUT_SIZES[case.arch]
    num_classes = 1000 if size == 224 else 10
    torch.manual_seed(0)
    net = AlexNet(case.arch, num_classes=num_classes).to(device)
    x = torch.randn(case.batch_size, 3, size, size, device=device)
    y = torch.randint(0, num_classes, (case.batch_size,), device=device)
    if case.channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    with FlopCounterMode(display=False) as counter:  # before compiling: eager op counts
        F.cross_entropy(net(x), y).backward()
    flops = counter.get_total_flops()
    if case.compile:
        net.compile()  # in place, as model.compile=true does in training

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=case.dtype == "bf16"):
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    warm_start = time.perf_counter()
    for _ in range(cfg.model_warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    warmup_s = time.perf_counter() - warm_start

    times = []
    for _ in range(cfg.model_repeats):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            for _ in range(cfg.model_steps):
                step()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end) / 1000 / cfg.model_steps)
        else:
            start = time.process_time()
            for _ in range(cfg.model_steps):
                step()
            times.append((time.process_time() - start) / cfg.model_steps)
    step_s = statistics.median(times)
    return {
        **asdict(case),
        "images_per_s": round(case.batch_size / step_s, 1),
        "step_ms": round(step_s * 1000, 2),
        "gflop_per_step": round(flops / 1e9, 2),
        "tflop_per_s": round(flops / step_s / 1e12, 4),
        "warmup_s": round(warmup_s, 1),
    }


def bench_models(cfg: BenchConfig) -> dict[str, Any]:
    peak = {
        "fp32": matmul_rate(cfg.device, torch.float32),
        "bf16": matmul_rate(cfg.device, torch.bfloat16),
    }
    # The device's best measured matmul rate, whatever the dtype: the ceiling a step
    # could reach (on CPUs without bf16 units the fp32 rate is the higher one).
    best = max(peak.values())
    rows = []
    for case in cfg.models:
        row = model_step_rate(case, cfg)
        row["fraction_of_matmul_rate"] = round(row["tflop_per_s"] * 1e12 / best, 3)
        rows.append(row)
    return {
        "matmul_tflop_per_s": {k: round(v / 1e12, 4) for k, v in peak.items()},
        "steps_per_repeat": cfg.model_steps,
        "repeats": cfg.model_repeats,
        "rows": rows,
    }


# ------------------------------------------------------------------------- driver


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


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


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
