"""A data=stream DataModule for tests
(`data._target_=helpers.stream_probe.IdRecordingStreamDataModule`, with tests/ on PYTHONPATH)
that records which images each rank trains and validates on.

Each record also carries its sample id (the shard's `index` field) next to the label;
on_after_batch_transfer, which runs when a batch is about to be used, appends
{"rank", "stage", "epoch", "step", "sanity", "ids"} to ids_rank<R>.jsonl in the run
folder and hands the model the usual (images, labels). With STREAM_PROBE_KILL_AT_STEP=N
the process group is SIGKILLed when training batch number N (global_step N) arrives: a
kill -9 in the middle of an epoch, after the step checkpoints before it were written.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from alexnet_lab.data.stream import ShardSample, StreamingDataModule


class IdSample(ShardSample):
    def __call__(self, record):
        image, label = super().__call__(record)
        return image, (label, record["index"])  # collated to a (B, 2) target tensor


class IdRecordingStreamDataModule(StreamingDataModule):
    sample_class = IdSample

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, targets = batch
        trainer = self.trainer
        stage = "train" if trainer.training else "test" if trainer.testing else "val"
        kill_at = os.environ.get("STREAM_PROBE_KILL_AT_STEP")
        if stage == "train" and kill_at and trainer.global_step == int(kill_at):
            os.killpg(os.getpgid(0), signal.SIGKILL)
        record = {
            "rank": trainer.global_rank,
            "stage": stage,
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "sanity": trainer.sanity_checking,
            "ids": targets[:, 1].tolist(),
        }
        path = Path(trainer.default_root_dir) / f"ids_rank{trainer.global_rank}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        return super().on_after_batch_transfer((images, targets[:, 0].contiguous()), dataloader_idx)


def read_records(run_dir: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(run_dir.glob("ids_rank*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def ids_of(records: list[dict], **match) -> list[int]:
    return sorted(i for r in records if all(r[k] == v for k, v in match.items()) for i in r["ids"])
