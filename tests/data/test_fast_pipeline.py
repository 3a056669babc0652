"""The fast input path: crop-window resize, channels-last batches, the fused normaliser,
and the GPU-decode switch (its batch decoder runs on CPU tensors here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.project import make_image_folder
from torchvision.io import encode_jpeg, encode_png, read_file
from torchvision.transforms.v2 import functional as TF

from alexnet_lab.data import ImageFolderDataModule
from alexnet_lab.data.gpu_decode import decode_batch, is_jpeg
from alexnet_lab.data.transforms import (
    BatchNormalizer,
    EvalTransform,
    TrainTransform,
    collate_images,
    crop_window,
    resize_center,
)
from alexnet_lab.errors import ConfigError


def smooth_image(height: int, width: int) -> torch.Tensor:
    """A photo-like image (smooth gradients): resizing it is well defined to a few levels."""
    y = torch.linspace(0, 1, height).view(1, -1, 1)
    x = torch.linspace(0, 1, width).view(1, 1, -1)
    channels = torch.cat([x * 200 + y * 40, y * 220 + x * 0, (x - y).abs() * 250])
    return channels.round().clamp(0, 255).to(torch.uint8)


@pytest.mark.parametrize("size", [(375, 500), (500, 375), (40, 30), (256, 256), (256, 300)])
def test_transforms_give_the_crop_size_and_match_resize_then_crop(size):
    image = smooth_image(*size)
    reference = TF.center_crop(resize_center(image, 64), [56, 56])
    for transform in (TrainTransform(64, 56, augment=False), EvalTransform(64, 56)):
        out = transform(image)
        assert out.shape == (3, 56, 56) and out.dtype == torch.uint8
        # The window is rounded to whole source pixels: a sub-pixel shift at most.
        assert (out.float() - reference.float()).abs().mean() < 2.0
    ten = EvalTransform(64, 56, ten_crop=True)(image)
    assert ten.shape == (10, 3, 56, 56)


def test_prepared_images_are_cropped_without_resizing():
    image = torch.randint(0, 256, (3, 256, 300), dtype=torch.uint8)  # shorter side 256 already
    window = crop_window(image, 256, 10, 20, 224)
    assert torch.equal(window, image[:, 10:234, 22 + 20 : 22 + 20 + 224])
    # Noise survives untouched only if nothing was resampled.
    centre = EvalTransform(256, 224)(image)
    assert torch.equal(centre, TF.center_crop(TF.center_crop(image, [256, 256]), [224, 224]))
    torch.manual_seed(3)
    crops = [TrainTransform(256, 224)(image) for _ in range(20)]
    square = TF.center_crop(image, [256, 256])
    for crop in crops:  # every random crop is a plain (maybe mirrored) sub-array of the square
        found = any(
            torch.equal(view, square[:, t : t + 224, s : s + 224])
            for view in (crop, crop.flip(-1))
            for t in range(33)
            for s in range(33)
            if view[0, 0, 0] == square[0, t, s]
        )
        assert found


def test_augment_off_gives_the_same_crop_every_time():
    image = smooth_image(375, 500)
    transform = TrainTransform(64, 56, augment=False)
    first = transform(image)
    assert all(torch.equal(first, transform(image)) for _ in range(3))


def test_batches_are_channels_last_and_equal_to_a_plain_stack():
    images = [TrainTransform(40, 32)(smooth_image(60, 80)) for _ in range(4)]
    batch, targets = collate_images([(image, i) for i, image in enumerate(images)])
    assert batch.shape == (4, 3, 32, 32)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch, torch.stack(images)) and targets.tolist() == [0, 1, 2, 3]


def test_fused_normaliser_matches_the_textbook_formula():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    expected = (images.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(
        3, 1, 1
    )
    torch.testing.assert_close(BatchNormalizer(mean, std)(images), expected)
    cl = images.contiguous(memory_format=torch.channels_last)
    out = BatchNormalizer(mean, std)(cl)
    torch.testing.assert_close(out, expected)
    assert out.is_contiguous()  # the model's usual layout, whatever the batch's


def test_folder_batches_are_the_per_sample_transforms_stacked(tmp_path: Path):
    root = make_image_folder(tmp_path / "tree", per_class=2, size=(50, 70))
    dm = ImageFolderDataModule(
        root=str(root), crop_size=24, resize_size=28, batch_size=6, augment=False
    )
    dm.setup("fit")
    images, targets = next(iter(dm.val_dataloader()))
    assert images.shape == (6, 3, 24, 24) and images.dtype == torch.uint8
    expected = torch.stack([dm.val_set[i][0] for i in range(6)])
    assert torch.equal(images, expected)


def test_decode_device_is_checked():
    with pytest.raises(ConfigError, match=r"data.decode_device='gpu': use 'cpu' .* or 'cuda'"):
        ImageFolderDataModule(root="x", decode_device="gpu")
    if not torch.cuda.is_available():
        no_gpu = r"decode_device=cuda .* PyTorch sees none .* Use data.decode_device=cpu"
        with pytest.raises(ConfigError, match=no_gpu):
            ImageFolderDataModule(root="x", decode_device="cuda")


def test_gpu_batch_decoder_matches_the_worker_path_on_cpu_tensors(tmp_path: Path):
    """decode_batch is what data.decode_device=cuda runs; on CPU tensors it must give
    what the DataLoader workers give (JPEGs in one batched call, PNGs on the side)."""
    image = smooth_image(45, 60)
    (tmp_path / "a.jpg").write_bytes(bytes(encode_jpeg(image, quality=95).tolist()))
    (tmp_path / "b.png").write_bytes(bytes(encode_png(image).tolist()))
    encoded = [read_file(str(tmp_path / name)) for name in ("a.jpg", "b.png", "a.jpg")]
    assert [is_jpeg(data) for data in encoded] == [True, False, True]
    transform = EvalTransform(32, 28)
    batch = decode_batch(encoded, "cpu", transform)
    assert batch.shape == (3, 3, 28, 28) and batch.dtype == torch.uint8
    assert torch.equal(batch[0], batch[2])
    assert torch.equal(batch[1], transform(image))  # PNG: lossless
