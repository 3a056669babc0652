"""DDP on CPU (gloo): inside a Hydra sweep, under torchrun, each rank's own random
stream, and validation that counts every image once.

Two ranks with lr=0 train nothing, so their validation must equal one process's on
the same data exactly: that holds only if the ranks' metrics are synchronised.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers.project import SRC, TESTS, run_entry_point
from helpers.wandb_offline import records

from alexnet_lab.data.sharding import eval_sampler
from alexnet_lab.errors import DataError
from alexnet_lab.training.ranks import SeedPerRank

SAME_DATA = [
    "data=synthetic",
    "data.train_size=128",
    "data.val_size=64",  # 32 per rank: no padding by the distributed sampler
    "data.batch_size=16",
    "trainer.max_epochs=2",
    # Weights stay at the (seeded) init, bit for bit in float32 (the step is ~1e-30 of
    # each weight): the same model for 1 and 2 ranks. (lr=0 is refused as a config error.)
    "optimizer.lr=1e-30",
    "callbacks=none",
]
DDP_CPU = [
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.precision=32-true",
]
SWEEP = "model.activation=relu,tanh"


def sweep_jobs(root: Path) -> tuple[Path, list[Path]]:
    (sweep,) = (root / "outputs" / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    return sweep, jobs


def metrics(job: Path) -> dict:
    return json.loads((job / "metrics.json").read_text())


@pytest.mark.slow
def test_ddp_inside_a_sweep_runs_each_job_once_with_synced_metrics(tmp_path: Path):
    ddp_root, single_root = tmp_path / "ddp", tmp_path / "single"
    ddp_root.mkdir(), single_root.mkdir()
    run_entry_point("train.py", "-m", SWEEP, *SAME_DATA, *DDP_CPU, cwd=ddp_root, timeout=900)
    run_entry_point("train.py", "-m", SWEEP, *SAME_DATA, "trainer=cpu", cwd=single_root)

    # Exactly the sweep's two job folders: no sweep or run started by a child rank.
    assert [p.name for p in (ddp_root / "outputs" / "train").iterdir()] == ["multiruns"]
    assert len(list((ddp_root / "outputs" / "train" / "multiruns").iterdir())) == 1
    sweep, jobs = sweep_jobs(ddp_root)
    assert [j.name for j in jobs] == ["0", "1"]
    _, single_jobs = sweep_jobs(single_root)
    for job, single in zip(jobs, single_jobs, strict=True):
        ddp_m, one_m = metrics(job), metrics(single)
        assert ddp_m["status"] == one_m["status"] == "completed", ddp_m.get("error")
        assert ddp_m["overrides"][0] == one_m["overrides"][0]  # same activation
        # Two ranks really ran: half the optimizer steps per epoch.
        assert one_m["global_step"] == 2 * ddp_m["global_step"] == 2 * 2 * (128 // 32)
        for key in ("val/acc_top1", "val/acc_top5", "val/loss"):
            assert ddp_m[key] == pytest.approx(one_m[key], abs=1e-6), key
        # One W&B run per job, written by rank 0 only; rank 1 left only its log file.
        assert len(list(job.glob("wandb/offline-run-*"))) == 1
        assert (job / "train_rank1.log").is_file()
    ids = {json.loads((j / "wandb_run.json").read_text())["id"] for j in jobs}
    assert len(ids) == 2
    summary = (sweep / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and all(",completed," in row for row in summary[1:])


@pytest.mark.slow
def test_torchrun_launch_starts_no_extra_processes(tmp_path: Path):
    """Under torchrun every rank exists already: Lightning launches nothing more, and
    both ranks (each running Hydra) share one run folder named after the launch."""
    env = {**os.environ, "ALEXNET_LAB_ROOT": str(tmp_path), "WANDB_MODE": "offline"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    result = subprocess.run(
        [*torchrun, "--nproc-per-node=2", str(SRC / "train.py"), *SAME_DATA, *DDP_CPU],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    assert "_torchrun-" in run_dir.name
    m = metrics(run_dir)
    assert m["status"] == "completed" and m["global_step"] == 2 * (128 // 32)
    # Only torchrun's two ranks: no child started by Lightning (it would log *_rank1.log).
    assert not list(run_dir.glob("*_rank*.log"))
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stdout + result.stderr
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1


def fake_trainer(rank: int, world_size: int) -> SimpleNamespace:
    kwargs = {"num_replicas": world_size, "rank": rank} if world_size > 1 else None
    return SimpleNamespace(global_rank=rank, distributed_sampler_kwargs=kwargs)


@pytest.mark.parametrize("size", [33, 34, 2])
def test_eval_sampler_gives_every_image_to_exactly_one_rank(size: int):
    shards = [list(eval_sampler(range(size), fake_trainer(r, 2))) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(size))  # no repeats, none missing
    assert abs(len(shards[0]) - len(shards[1])) <= 1


def test_eval_sampler_is_lightnings_default_for_one_process_and_refuses_empty_ranks():
    assert eval_sampler(range(5), fake_trainer(0, 1)) is None
    assert eval_sampler(range(5), None) is None
    with pytest.raises(DataError, match="fewer than the 4 DDP ranks"):
        eval_sampler(range(3), fake_trainer(0, 4))


def test_seed_per_rank_gives_each_rank_its_own_reproducible_stream(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")

    def draws(rank: int) -> torch.Tensor:
        torch.manual_seed(7)  # what seed_everything left on every rank
        SeedPerRank(7).setup(fake_trainer(rank, 2), None, "fit")
        return torch.rand(8)

    assert not torch.equal(draws(0), draws(1))
    assert torch.equal(draws(1), draws(1))
    # Rank 0 keeps the run's seed: one-process runs draw what seed=7 always meant.
    torch.manual_seed(7)
    seed_7 = torch.rand(8)
    assert torch.equal(draws(0), seed_7)
    # The training sampler's shuffle seed is shared by all ranks and left alone.
    assert os.environ["PL_GLOBAL_SEED"] == "7"


def streams(seed: int, rank: int) -> tuple[list[float], list[float], list[float]]:
    """What torch, numpy and random draw on `rank` of a run of `seed` after SeedPerRank."""
    SeedPerRank(seed).setup(fake_trainer(rank, 2), None, "fit")
    return torch.rand(4).tolist(), np.random.rand(4).tolist(), [random.random() for _ in range(4)]


def test_seed_per_rank_streams_of_two_seeds_never_coincide():
    # With seed + rank, seed 7 on rank 1 was seed 8 on rank 0: a study's seeds 7 and 8
    # shared their dropout and PCA noise.
    for seed in (0, 7, 2**32 - 2):
        ours, neighbours = streams(seed, 1), streams(seed + 1, 0)
        for library, mine, theirs in zip(
            ("torch", "numpy", "random"), ours, neighbours, strict=True
        ):
            assert mine != theirs, (seed, library)
    assert streams(7, 1) == streams(7, 1)  # reproducible


def test_seed_per_rank_keeps_rank_0_on_the_runs_own_seed():
    """A one-process run draws what it drew before ranks had seeds of their own: the
    committed single-device study results stay reproducible."""
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    plain = torch.rand(4).tolist(), np.random.rand(4).tolist(), [random.random() for _ in range(4)]
    assert streams(7, 0) == plain


# Two ranks, a val split of odd size with uneven batch counts per rank (17 images: two
# batches on rank 0, 16: one on rank 1), the global batch split over the ranks.
UNEVEN_VAL = [
    "data=synthetic",
    "data.train_size=128",
    "data.val_size=33",
    "data.batch_size=null",
    "data.global_batch_size=32",
    "trainer.max_epochs=2",
    "+callbacks.rank_probe._target_=helpers.ddp_probe.RankProbe",
]


@pytest.fixture(scope="module")
def twice_on_two_ranks(tmp_path_factory) -> list[Path]:
    """The same 2-rank run (same seed) twice; W&B offline, so the confusion matrix runs."""
    run_dirs = []
    with pytest.MonkeyPatch.context() as mp:  # the ranks import the probe from tests/
        mp.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
        for name in ("first", "second"):
            root = tmp_path_factory.mktemp(name)
            run_entry_point("train.py", *UNEVEN_VAL, *DDP_CPU, cwd=root, timeout=600)
            (run_dir,) = (root / "outputs" / "train" / "runs").iterdir()
            run_dirs.append(run_dir)
    return run_dirs


def probes(run_dir: Path) -> list[dict]:
    return [json.loads((run_dir / f"probe_rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
def test_ranks_draw_their_own_noise_and_the_run_repeats(twice_on_two_ranks: list[Path]):
    first, second = twice_on_two_ranks
    rank0, rank1 = probes(first)
    assert rank0["pca_shift"] != rank1["pca_shift"]
    assert rank0["dropout_mask"] != rank1["dropout_mask"]
    # The training shuffle is the same permutation on both ranks: disjoint halves.
    assert sorted(rank0["train_indices"] + rank1["train_indices"]) == list(range(128))
    # Same seed, same world size: the same draws and the same numbers.
    assert probes(second) == [rank0, rank1]
    m1, m2 = metrics(first), metrics(second)
    assert m1["status"] == m2["status"] == "completed"
    for key in ("train/loss", "val/loss", "val/acc_top1", "global_step"):
        assert m1[key] == m2[key], key
    # The global batch of 32, split over the two ranks, as metrics.json records it.
    assert m1["data/batch_size_per_device"] == 16 and m1["data/world_size"] == 2
    assert m1["data/global_batch_size"] == 32
    assert m1["global_step"] == 2 * 128 // 32


def mean_loss(run_dir: Path, rank: int) -> tuple[float, int]:
    """A rank's mean training loss over the last epoch and its image count."""
    losses = json.loads((run_dir / f"train_losses_rank{rank}.json").read_text())
    images = sum(n for _, n in losses)
    return sum(loss * n for loss, n in losses) / images, images


@pytest.mark.slow
def test_train_loss_is_the_mean_over_all_ranks(twice_on_two_ranks: list[Path]):
    run_dir = twice_on_two_ranks[0]
    (rank0, n0), (rank1, n1) = mean_loss(run_dir, 0), mean_loss(run_dir, 1)
    assert n0 == n1 == 64 and abs(rank0 - rank1) > 1e-3  # distinct shards: distinct losses
    every_image = (rank0 * n0 + rank1 * n1) / (n0 + n1)
    m = metrics(run_dir)
    assert m["train/loss"] == pytest.approx(every_image, rel=1e-5), "not rank 0's share"
    # The epoch curve W&B plots (rank 0 logs it) is that mean too.
    (wandb_run,) = run_dir.glob("wandb/offline-run-*")
    curve = [
        json.loads(item.value_json)
        for record in records(wandb_run)
        if record.WhichOneof("record_type") == "history"
        for item in record.history.item
        if (item.key or "/".join(item.nested_key)) == "train/loss_epoch"
    ]
    assert len(curve) == 2 and curve[-1] == pytest.approx(every_image, rel=1e-5)


@pytest.mark.slow
def test_ddp_validation_counts_each_image_once(twice_on_two_ranks: list[Path]):
    run_dir = twice_on_two_ranks[0]
    ddp = metrics(run_dir)
    # Only a score strictly between 0 and 1 tells: a padded split (34 images, one
    # counted twice) gives (c + d) / 34 != c / 33 for any other c.
    assert 0 < ddp["val/acc_top1"] < 1
    eval_root = run_dir.parent / "eval"
    eval_root.mkdir()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    # Another batch size on purpose: it replaces the run's global batch of 32.
    run_entry_point("eval.py", f"ckpt_path={ckpt}", "data.batch_size=5", cwd=eval_root)
    (eval_dir,) = (eval_root / "outputs" / "eval" / "runs").iterdir()
    one = metrics(eval_dir)
    assert ddp["val/acc_top1"] == pytest.approx(one["eval/acc_top1"], abs=1e-7)
    assert ddp["val/acc_top5"] == pytest.approx(one["eval/acc_top5"], abs=1e-7)
    assert ddp["val/loss"] == pytest.approx(one["eval/loss"], rel=1e-5)
    # The W&B confusion matrix (summed over ranks) saw the 33 images once each.
    (table,) = run_dir.glob("wandb/offline-run-*/files/media/table/val/confusion_matrix*.json")
    cells = json.loads(table.read_text())["data"]
    assert sum(n for _, _, n in cells) == 33
    correct = sum(n for actual, predicted, n in cells if actual == predicted)
    assert correct / 33 == pytest.approx(ddp["val/acc_top1"], abs=1e-7)
