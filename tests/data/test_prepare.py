"""`prepare`: the paper's stored form, resumable, unreadable files listed; training reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.project import make_image_folder, run_entry_point
from torchvision.io import decode_image, encode_png, write_file

from alexnet_lab.data import ImageFolderDataModule
from alexnet_lab.data.prepare import FAILED_LIST, prepare_tree
from alexnet_lab.errors import ConfigError, DataError


@pytest.fixture
def raw_tree(tmp_path: Path) -> Path:
    root = make_image_folder(tmp_path / "raw", per_class=3, size=(40, 60))
    (root / "train" / "n01440764" / "broken.JPEG").write_bytes(b"\xff\xd8\xff not a jpeg")
    image = torch.randint(0, 256, (3, 70, 50), dtype=torch.uint8)
    write_file(str(root / "val" / "n01443537" / "extra.png"), encode_png(image))
    return root


def sizes(root: Path) -> dict[str, tuple[int, ...]]:
    return {
        str(p.relative_to(root)): tuple(decode_image(str(p)).shape)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != FAILED_LIST
    }


def test_prepare_writes_the_papers_form_lists_bad_files_and_resumes(raw_tree, tmp_path):
    dst = tmp_path / "prepared"
    first = prepare_tree(raw_tree, dst, size=32, quality=90, workers=2, progress=False)
    assert first["converted"] == 18 + 1 and first["failed"] == 1
    assert first["skipped_existing"] == 0
    assert first["images_per_s_per_core"] > 0  # the rate: a smoke check (no bound on speed)
    assert "broken.JPEG" in (dst / FAILED_LIST).read_text()
    out = sizes(dst)
    assert len(out) == 19 and set(out.values()) == {(3, 32, 32)}
    assert "val/n01443537/extra.JPEG" in out  # PNG sources become JPEGs, same place

    (dst / "train" / "n01440764" / "n01440764_0000.JPEG").unlink()
    again = prepare_tree(raw_tree, dst, size=32, workers=2, progress=False)
    assert again["converted"] == 1 and again["skipped_existing"] == 18
    assert again["failed"] == 1  # still unreadable, still listed


def test_shorter_side_mode_keeps_the_aspect_ratio(raw_tree, tmp_path):
    dst = tmp_path / "shorter"
    prepare_tree(raw_tree, dst, mode="shorter_side", size=32, workers=1, progress=False)
    out = sizes(dst)
    assert out["train/n01440764/n01440764_0000.JPEG"] == (3, 32, 48)  # 40x60 -> 32x48
    assert out["val/n01443537/extra.JPEG"] == (3, 45, 32)  # 70x50 -> 45x32


def test_training_reads_the_prepared_tree_with_crops_only(raw_tree, tmp_path):
    dst = tmp_path / "prepared"
    prepare_tree(raw_tree, dst, size=32, workers=1, progress=False)
    dm = ImageFolderDataModule(
        root=str(dst), crop_size=28, resize_size=32, batch_size=4, augment=False
    )
    dm.setup("fit")
    images, _ = next(iter(dm.val_dataloader()))
    first = decode_image(dm.val_set.samples[0][0])
    assert torch.equal(images[0], first[:, 2:30, 2:30])  # a plain centre crop, no resampling


def test_bad_arguments_are_user_errors(raw_tree, tmp_path):
    with pytest.raises(ConfigError, match="mode"):
        prepare_tree(raw_tree, tmp_path / "o", mode="squash")
    with pytest.raises(DataError, match="not a folder"):
        prepare_tree(tmp_path / "missing", tmp_path / "o")
    with pytest.raises(ConfigError, match="inside"):
        prepare_tree(raw_tree, raw_tree / "prepared")


def test_prepare_entry_point(raw_tree, tmp_path):
    dst = tmp_path / "entry"
    run_entry_point(
        "prepare.py", f"src={raw_tree}", f"dst={dst}", "size=24", "workers=2", cwd=tmp_path
    )
    (metrics,) = (tmp_path / "outputs" / "prepare" / "runs").glob("*/metrics.json")
    summary = json.loads(metrics.read_text())
    assert summary["status"] == "completed" and summary["converted"] == 19
    assert summary["failed"] == 1 and Path(summary["failed_list"]).is_file()
    missing = run_entry_point("prepare.py", f"src={raw_tree}", cwd=tmp_path, check=False)
    assert missing.returncode == 1 and "dst" in missing.stdout + missing.stderr
