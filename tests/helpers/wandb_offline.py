"""Read what an offline W&B run recorded (its `run-<id>.wandb` file), without the network.

The file is W&B's record log: a 7-byte header, then LevelDB-style blocks of 32 KiB whose
chunks (CRC, length, type) carry protobuf `Record`s.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(run_dir: Path) -> Iterator[pb.Record]:
    (path,) = Path(run_dir).glob("*.wandb")
    data = path.read_bytes()
    pos, chunks = HEADER, b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a chunk: padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0:
            break
        chunks += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(chunks)
            chunks = b""
            yield record


def summary_and_exit(run_dir: Path) -> dict:
    """The run's id, its summary keys as last set, whether it was marked preempting, and
    its exit code."""
    out: dict = {"summary": {}, "preempting": False, "exit_code": None, "id": None}
    for record in records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["id"] = record.run.run_id
        elif kind == "summary":
            for item in record.summary.update:
                key = item.key or "/".join(item.nested_key)
                out["summary"][key] = json.loads(item.value_json)
        elif kind == "preempting":
            out["preempting"] = True
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def leet_inspect(run_file: Path, *flags: str) -> str:
    wandb_cli = Path(sys.executable).parent / "wandb"
    return subprocess.run(
        [wandb_cli, "leet", "inspect", *flags, "--json", str(run_file)],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout


def read_wandb_run(job_dir: Path) -> dict:
    """What an offline W&B run holds, read back from its .wandb file: the summary
    (name, config, tags, last metrics) plus group and job type from its run record."""
    (run_file,) = job_dir.glob("wandb/offline-run-*/run-*.wandb")
    run = json.loads(leet_inspect(run_file, "--summary"))
    records = [json.loads(line) for line in leet_inspect(run_file).splitlines() if line]
    (first_run_record, *_) = (r["run"] for r in records if r["type"] == "run")
    run["group"] = first_run_record.get("run_group")
    run["job_type"] = first_run_record.get("job_type")
    return run
