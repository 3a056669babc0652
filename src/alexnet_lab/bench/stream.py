"""`make bench`'s stream_vs_folder: the same prepared images read as LitData shards
(data=stream) and as a folder tree (data=folder), same decoder, same transforms, one
loader process each, paired rounds (paired.py), process CPU time: images/s per core of
both and their ratio with its interval (shards / folder; on local disk the goal is >= 1.0).
"""

from __future__ import annotations

import functools
import math
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from alexnet_lab.bench.common import TARGETS
from alexnet_lab.bench.paired import Budget, Ratio, ratio_results, run_rounds, timed
from alexnet_lab.data import ImageFolderDataModule
from alexnet_lab.data.shards import write_shards
from alexnet_lab.data.stream import StreamingDataModule

STREAM_RATIOS = {"stream_vs_folder": Ratio("stream", "folder", TARGETS["stream_vs_folder"])}


def bench_stream_vs_folder(
    prepared: Path, shards: Path, batch_size: int, repeats: int = 2, budget: Budget | None = None
) -> dict[str, Any]:
    """Pack `prepared` into `shards` (anew: the bench rewrites its prepared tree every run),
    then time training epochs of each reader in paired rounds: `budget`'s, or exactly
    `repeats` rounds (at least two, for an interval)."""
    if budget is None:
        rounds = max(2, repeats)
        budget = Budget(min_rounds=rounds, max_rounds=rounds, seconds=math.inf)
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
    contenders = {
        name: timed(functools.partial(epoch, name), time.process_time) for name in loaders
    }
    rounds = run_rounds(contenders, STREAM_RATIOS, budget)
    med = {name: statistics.median(values) for name, values in rounds.rates.items()}
    ratios = ratio_results(rounds, STREAM_RATIOS)
    return {
        "images": epoch("folder"),
        "batch_size": batch_size,
        "rounds": rounds.count,
        "stopped": rounds.stopped,
        "pack_s": round(pack_s, 2),
        "images_per_s_per_core": {name: round(rate, 1) for name, rate in med.items()},
        "images_per_s_per_core_each_round": {
            name: [round(rate, 1) for rate in values] for name, values in rounds.rates.items()
        },
        "ratios": ratios,
        "stream_vs_folder": ratios["stream_vs_folder"]["value"],  # the same, as a number
    }


def format_stream_lines(stream: dict[str, Any]) -> list[str]:
    rates = stream["images_per_s_per_core"]
    return [
        "",
        f"shards vs folder (same {stream['images']} prepared images, one loader process), "
        f"images/s per core: stream {rates['stream']}, folder {rates['folder']}; "
        f"packed in {stream['pack_s']} s",
    ]
