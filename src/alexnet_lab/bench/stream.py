"""`make bench`'s stream_vs_folder: the same prepared images read as LitData shards
(data=stream) and as a folder tree (data=folder), same decoder, same transforms, one
loader process each, interleaved repeats, process CPU time: images/s per core of both
and their ratio (shards / folder; on local disk the target is >= 1.0).
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from alexnet_lab.data import ImageFolderDataModule
from alexnet_lab.data.shards import write_shards
from alexnet_lab.data.stream import StreamingDataModule


def bench_stream_vs_folder(
    prepared: Path, shards: Path, batch_size: int, repeats: int
) -> dict[str, Any]:
    """Pack `prepared` into `shards` (anew: the bench rewrites its prepared tree every run),
    then time one training epoch of each reader."""
    shutil.rmtree(shards, ignore_errors=True)
    start = time.monotonic()
    write_shards(prepared, shards, progress=False)
    pack_s = time.monotonic() - start
    common = {"crop_size": 224, "resize_size": 256, "batch_size": batch_size, "num_workers": 0}
    readers = {
        "folder": ImageFolderDataModule(root=str(prepared), **common),
        "stream": StreamingDataModule(root=str(shards), persistent_workers=False, **common),
    }
    loaders = {}
    for name, dm in readers.items():
        dm.setup("fit")
        loaders[name] = dm.train_dataloader()

    def epoch(name: str) -> int:
        return sum(len(images) for images, _ in loaders[name])

    for name in loaders:  # warm the page cache and lazy imports
        epoch(name)
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for _ in range(repeats):
        for name in loaders:
            begin = time.process_time()
            count = epoch(name)
            rates[name].append(count / max(time.process_time() - begin, 1e-9))
    med = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "images": epoch("folder"),
        "batch_size": batch_size,
        "repeats": repeats,
        "pack_s": round(pack_s, 2),
        "images_per_s_per_core": {name: round(rate, 1) for name, rate in med.items()},
        "images_per_s_per_core_each_repeat": {
            name: [round(rate, 1) for rate in values] for name, values in rates.items()
        },
        "stream_vs_folder": med["stream"] / med["folder"],
    }


def format_stream_lines(stream: dict[str, Any]) -> list[str]:
    rates = stream["images_per_s_per_core"]
    return [
        "",
        f"shards vs folder (same {stream['images']} prepared images, one loader process), "
        f"images/s per core: stream {rates['stream']}, folder {rates['folder']}; "
        f"packed in {stream['pack_s']} s",
    ]
