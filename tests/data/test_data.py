"""The data pipeline on generated folders: sizes, flips, determinism, PCA noise, class order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.project import make_image_folder

from alexnet_lab.data import ImageFolderDataModule, SyntheticDataModule
from alexnet_lab.data.builtin import fashion_mnist_mini
from alexnet_lab.data.transforms import BatchNormalizer, EvalTransform, TrainTransform
from alexnet_lab.errors import ConfigError, DataError


def datamodule(root: Path, **kwargs) -> ImageFolderDataModule:
    kwargs = {"crop_size": 24, "resize_size": 28, "batch_size": 4, **kwargs}
    dm = ImageFolderDataModule(root=str(root), **kwargs)
    dm.setup("fit")
    return dm


def test_folder_pipeline_gives_uint8_crops_of_the_input_size(image_folder: Path):
    dm = datamodule(image_folder)
    images, targets = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 24, 24)
    assert targets.dtype == torch.int64
    val_images, _ = next(iter(dm.val_dataloader()))
    assert val_images.shape == (4, 3, 24, 24)


def test_class_order_is_sorted_and_hidden_and_stray_files_are_ignored(tmp_path: Path):
    root = make_image_folder(tmp_path, classes=("n03", "n01", "n02"), per_class=2)
    (root / "train" / ".cache").mkdir()
    (root / "train" / "n01" / ".DS_Store").write_bytes(b"\0")
    (root / "train" / "n01" / "notes.txt").write_text("not an image")
    (root / "train" / "n01" / "upper.PNG").write_bytes(
        (root / "train" / "n01").iterdir().__next__().read_bytes()
    )
    dm = datamodule(root)
    assert dm.classes == ["n01", "n02", "n03"]
    names = [Path(p).name for p, _ in dm.train_set.samples]
    assert "notes.txt" not in names and ".DS_Store" not in names and "upper.PNG" in names
    labels = {Path(p).parent.name: t for p, t in dm.train_set.samples}
    assert labels == {"n01": 0, "n02": 1, "n03": 2}


def test_train_transform_crops_and_flips():
    image = torch.arange(3 * 32 * 32, dtype=torch.int64).remainder(251).to(torch.uint8)
    image = image.view(3, 32, 32)
    transform = TrainTransform(resize_size=32, crop_size=32)  # no room to crop: only flips
    torch.manual_seed(0)
    outputs = [transform(image) for _ in range(40)]
    flipped = [torch.equal(o, image.flip(-1)) for o in outputs]
    unchanged = [torch.equal(o, image) for o in outputs]
    assert all(f or u for f, u in zip(flipped, unchanged, strict=False))
    assert 5 < sum(flipped) < 35

    cropper = TrainTransform(resize_size=32, crop_size=20)
    crops = {tuple(cropper(image).flatten()[:5].tolist()) for _ in range(30)}
    assert len(crops) > 5 and cropper(image).shape == (3, 20, 20)


def test_augment_off_is_deterministic_and_the_centre_crop():
    image = torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8)
    train = TrainTransform(resize_size=32, crop_size=24, augment=False)
    evaluation = EvalTransform(resize_size=32, crop_size=24)
    first = train(image)
    assert all(torch.equal(first, train(image)) for _ in range(5))
    assert torch.equal(first, evaluation(image))


def test_ten_crop_gives_corners_centre_and_their_flips():
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    views = EvalTransform(resize_size=32, crop_size=24, ten_crop=True)(image)
    assert views.shape == (10, 3, 24, 24)
    assert torch.equal(views[0], image[:, :24, :24])  # top-left corner
    assert torch.equal(views[4], image[:, 4:28, 4:28])  # centre
    assert torch.equal(views[5], image.flip(-1)[:, :24, :24])  # flipped top-left


def test_batch_normalizer_normalises_and_pca_noise_has_the_papers_statistics():
    normalizer = BatchNormalizer(mean=(0.5,) * 3, std=(0.25,) * 3, pca_std=0.1)
    images = torch.full((4000, 3, 2, 2), 128, dtype=torch.uint8)
    clean = normalizer(images)
    torch.testing.assert_close(clean, torch.full_like(clean, (128 / 255 - 0.5) / 0.25))
    torch.manual_seed(0)
    noisy = normalizer(images, pca_noise=True)
    shift = (noisy - clean) * 0.25  # back to pixel units in [0, 1]
    per_image = shift[:, :, 0, 0]
    # Same shift on every pixel of an image, different across images.
    assert torch.allclose(shift, per_image[:, :, None, None].expand_as(shift), atol=1e-6)
    # Covariance of the shift = P diag((0.1 * lambda)^2) P^T.
    eigvec, eigval = normalizer.eigvec, normalizer.eigval
    expected = eigvec @ torch.diag((0.1 * eigval) ** 2) @ eigvec.T
    torch.testing.assert_close(per_image.T.cov(), expected, rtol=0.1, atol=2e-6)


def test_augment_false_turns_pca_noise_off(image_folder: Path):
    assert datamodule(image_folder, augment=False).normalizer.pca_std == 0.0
    assert datamodule(image_folder, augment=True).normalizer.pca_std == 0.1


def test_resize_size_defaults_to_the_papers_ratio(image_folder: Path):
    assert datamodule(image_folder, crop_size=224, resize_size=None).resize_size == 256
    assert datamodule(image_folder, crop_size=32, resize_size=None).resize_size == 37


def test_synthetic_data_needs_no_files():
    dm = SyntheticDataModule(num_classes=5, train_size=8, val_size=4, crop_size=32, batch_size=4)
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    assert int(targets.max()) < 5 and dm.num_classes == 5


def test_builtin_dataset_is_written_once_as_an_imagenet_tree(shared_data_dir: Path):
    root = shared_data_dir / "fashion-mnist-mini"
    fashion_mnist_mini(root, home=root)
    train = sorted(p.name for p in (root / "train").iterdir())
    assert len(train) == 10 and "ankle_boot" in train
    assert sum(1 for _ in (root / "train").rglob("*.png")) == 3000
    assert sum(1 for _ in (root / "val").rglob("*.png")) == 1000
    marker = root / "train" / "bag" / "marker.txt"
    marker.write_text("kept")
    fashion_mnist_mini(root, home=root)  # second call: nothing rewritten
    assert marker.read_text() == "kept"
    marker.unlink()


# --- bad input --------------------------------------------------------------


def test_missing_root_is_a_clear_error(tmp_path: Path):
    dm = ImageFolderDataModule(root=str(tmp_path / "nope"), crop_size=24)
    with pytest.raises(DataError, match="does not exist.*train/<class>"):
        _ = dm.classes


def test_unset_root_is_a_clear_error():
    with pytest.raises(ConfigError, match="data.root is not set"):
        ImageFolderDataModule(root="???", crop_size=24)


def test_empty_root_and_empty_split_are_clear_errors(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="train is missing"):
        _ = ImageFolderDataModule(root=str(tmp_path / "empty"), crop_size=24).classes
    root = make_image_folder(tmp_path / "noval", splits=("train",))
    for name in ("n01440764", "n01443537", "n01484850"):
        (root / "val" / name).mkdir(parents=True)
    with pytest.raises(DataError, match="val has no images"):
        datamodule(root)


def test_mismatched_class_folders_are_named(tmp_path: Path):
    root = make_image_folder(tmp_path, classes=("a", "b"), per_class=1)
    (root / "val" / "zebra").mkdir()
    with pytest.raises(DataError, match="zebra"):
        datamodule(root)


def test_crop_larger_than_resize_is_a_config_error(image_folder: Path):
    with pytest.raises(ConfigError, match="resize_size"):
        ImageFolderDataModule(root=str(image_folder), crop_size=64, resize_size=32)
