"""The paper's offline step: every image rescaled so its shorter side is 256, the
central 256x256 kept (section 2), stored as JPEG. Training then only crops and flips.

Parallel over processes, resumable (a finished file is never redone: outputs are
written to a temporary name and renamed), and an unreadable file is listed in
DST/prepare_failed.txt instead of stopping the run.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from PIL import Image, UnidentifiedImageError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from torchvision.io import encode_jpeg
from torchvision.transforms.v2 import functional as TF

from alexnet_lab.data.folders import IMAGE_EXTENSIONS
from alexnet_lab.data.shards import TREE_DIR, import_litdata, is_url, write_shards
from alexnet_lab.data.transforms import (
    UnreadableImageError,
    crop_window,
    read_image_rgb,
    resize_square,
)
from alexnet_lab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MODES = ("center_crop", "shorter_side")
FAILED_LIST = "prepare_failed.txt"


def list_sources(src: Path) -> list[Path]:
    """Image files under src (any depth), relative to it; hidden files and folders skipped."""
    found = []
    for folder, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Path(folder, name).relative_to(src))
    return found


def target_name(rel: Path) -> Path:
    """Where a source file goes: same relative path, a JPEG extension."""
    return rel if rel.suffix.lower() in (".jpg", ".jpeg") else rel.with_suffix(".JPEG")


def decode_at_least(path: str, size: int) -> torch.Tensor:
    """Decode an image, letting libjpeg scale a large JPEG by 1/2, 1/4 or 1/8 while it
    decodes (PIL's draft) as long as the shorter side stays >= size: a 2000x1500 photo
    then costs about what a 500x375 one does. Other files use the normal decoder."""
    try:
        with Image.open(path) as image:  # reads the header only
            if image.format == "JPEG" and min(image.size) >= 2 * size:
                image.draft("RGB", (size, size))
                return TF.pil_to_tensor(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        pass  # read_image_rgb names what is wrong with the file
    return read_image_rgb(path)


def stored_form(image: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    if mode == "center_crop":
        return resize_square(crop_window(image, size, 0, 0, size), size)
    height, width = image.shape[-2:]
    scale = size / min(height, width)
    if scale == 1:
        return image
    new_size = [max(size, round(height * scale)), max(size, round(width * scale))]
    return TF.resize(image.unsqueeze(0).contiguous(), new_size, antialias=True)[0]


def convert_one(job: tuple[str, str, int, str, int]) -> tuple[str, str | None, float]:
    """(source, error or None, CPU seconds): runs in a pool worker."""
    source, target, size, mode, quality = job
    start = time.process_time()
    try:
        image = stored_form(decode_at_least(source, size), size, mode)
        data = encode_jpeg(image.contiguous(), quality=quality)
        tmp = Path(target).with_name(f".{Path(target).name}.tmp")
        tmp.write_bytes(data.numpy().tobytes())
        os.replace(tmp, target)  # a file under its final name is always complete
    except UnreadableImageError as err:
        return source, str(err).removeprefix(f"{source}: "), time.process_time() - start
    except (RuntimeError, OSError, ValueError) as err:
        return source, f"{type(err).__name__}: {err}", time.process_time() - start
    return source, None, time.process_time() - start


def _init_worker() -> None:
    torch.set_num_threads(1)  # one process per core; no oversubscription


def prepare_tree(
    src: str | Path,
    dst: str | Path,
    mode: str = "center_crop",
    size: int = 256,
    quality: int = 90,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Convert every image under src into dst (same layout). Returns counts and throughput."""
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if mode not in MODES:
        raise ConfigError(f"mode={mode!r}: use one of {', '.join(MODES)}.")
    if not 1 <= quality <= 100 or size < 1:
        raise ConfigError(f"quality={quality}, size={size}: quality is 1-100, size >= 1.")
    if not src.is_dir():
        raise DataError(f"src={src} is not a folder. Point src at the raw tree (train/, val/).")
    if src.resolve() == dst.resolve() or src.resolve() in dst.resolve().parents:
        raise ConfigError(f"dst={dst} is inside src={src}: write the prepared tree elsewhere.")
    workers = workers or os.cpu_count() or 1

    jobs, skipped, targets = [], 0, {}
    for rel in list_sources(src):
        target = dst / target_name(rel)
        if target in targets:
            raise DataError(
                f"{src / rel} and {src / targets[target]} would both become {target}. "
                f"Rename one of them."
            )
        targets[target] = rel
        if target.exists():
            skipped += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((str(src / rel), str(target), size, mode, quality))
    if not targets:
        raise DataError(f"No image files under src={src} (looked for {sorted(IMAGE_EXTENSIONS)}).")

    failed: list[str] = []
    cpu_seconds, start = 0.0, time.monotonic()
    with (
        multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker) as pool,
        Progress(
            *Progress.get_default_columns()[:1],
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            disable=not progress,
        ) as bar,
    ):
        task = bar.add_task(f"prepare ({workers} processes)", total=len(jobs))
        for source, error, cpu in pool.imap_unordered(convert_one, jobs, chunksize=8):
            cpu_seconds += cpu
            if error is not None:
                failed.append(f"{source}: {error}")
            bar.advance(task)
    wall = time.monotonic() - start

    failed.sort()
    failed_list = dst / FAILED_LIST
    if failed:
        dst.mkdir(parents=True, exist_ok=True)
        failed_list.write_text("".join(f"{line}\n" for line in failed))
        log.warning("%d unreadable files, listed in %s", len(failed), failed_list)
    elif failed_list.exists():
        failed_list.unlink()  # an earlier run's list: those files are converted now
    converted = len(jobs) - len(failed)
    return {
        "src": str(src),
        "dst": str(dst),
        "mode": mode,
        "size": size,
        "quality": quality,
        "workers": workers,
        "converted": converted,
        "skipped_existing": skipped,
        "failed": len(failed),
        "failed_list": str(failed_list) if failed else None,
        "wall_s": round(wall, 2),
        "images_per_s": round(len(jobs) / wall, 1) if jobs and wall > 0 else None,
        # Images per CPU-second of the worker processes: the per-core rate, which
        # does not depend on what else the machine is doing.
        "images_per_s_per_core": round(len(jobs) / cpu_seconds, 1) if cpu_seconds else None,
    }


FORMATS = ("folder", "litdata")


def prepare(cfg: DictConfig) -> dict[str, Any]:
    """The `src/prepare.py` task: a JPEG tree (format=folder), or that tree under DST/jpeg
    packed into LitData shards in DST (format=litdata, see alexnet_lab.data.shards)."""
    fmt = cfg.get("format", "folder")
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}: use one of {', '.join(FORMATS)}.")
    tree = cfg.dst
    if fmt == "litdata":
        import_litdata()  # before converting anything: the clear error if it is missing
        if is_url(cfg.dst):
            raise ConfigError(
                f"dst={cfg.dst}: prepare writes to a local folder. Prepare there, then upload "
                f"the folder (e.g. `aws s3 sync OUT s3://bucket/imagenet --exclude 'jpeg/*'`) "
                f"and train with data=stream data.root=s3://bucket/imagenet."
            )
        tree = str(Path(cfg.dst).expanduser() / TREE_DIR)
    summary = prepare_tree(
        cfg.src, tree, cfg.mode, cfg.size, cfg.quality, cfg.workers, cfg.progress
    )
    if fmt == "litdata":
        stored_form = {k: summary[k] for k in ("mode", "size", "quality")}
        summary.update(write_shards(tree, cfg.dst, cfg.workers, cfg.progress, stored_form))
    log.info(
        "prepared %d, skipped %d finished, %d unreadable; %s images/s, %s per core",
        summary["converted"],
        summary["skipped_existing"],
        summary["failed"],
        summary["images_per_s"],
        summary["images_per_s_per_core"],
    )
    if fmt == "litdata":
        log.info("shards in %s: %s images", summary["shards"], summary["shard_images"])
    return summary
