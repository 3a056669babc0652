"""src/predict.py and src/export.py: top-5 probabilities per image from a checkpoint or
torchvision's AlexNet weights, and exported files that give the checkpoint's logits."""

from __future__ import annotations

import importlib.util
import json
import math
import pickle
from pathlib import Path

import pytest
import torch
import torchvision
from helpers.project import compose_config, folder_overrides, make_image_folder, run_entry_point
from torchvision.io import write_file
from torchvision.transforms.v2 import functional as TF

from alexnet_lab.data.transforms import BatchNormalizer, EvalTransform
from alexnet_lab.errors import CheckpointError, ConfigError, DataError
from alexnet_lab.inference.export import METADATA_FILE, export
from alexnet_lab.inference.predict import Classifier, find_images, imagenet_classes, predict
from alexnet_lab.runs import run_task
from alexnet_lab.tasks import train

CLASSES = ["n01440764", "n01443537", "n01484850"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A one-epoch small AlexNet and a folder of photos to classify."""
    root = make_image_folder(tmp_path_factory.mktemp("folder"), per_class=8)
    out = tmp_path_factory.mktemp("run")
    metrics = run_task(train, compose_config(folder_overrides(root), out))
    photos = tmp_path_factory.mktemp("photos")
    (photos / "album" / ".thumbnails").mkdir(parents=True)
    for k, name in enumerate(CLASSES):
        (photos / "album" / f"{k}.jpg").write_bytes(
            (root / "val" / name / f"{name}_0000.JPEG").read_bytes()
        )
    (photos / "album" / "notes.txt").write_text("not an image")
    (photos / "album" / ".thumbnails" / "t.jpg").write_bytes(b"hidden")
    single = photos / "single.JPEG"
    single.write_bytes((root / "val" / CLASSES[0] / f"{CLASSES[0]}_0001.JPEG").read_bytes())
    return {"ckpt": Path(metrics["last_checkpoint"]), "photos": photos, "single": single}


def predict_config(tmp_path: Path, *overrides: str):
    return compose_config(list(overrides), tmp_path / "out", config_name="predict")


def photo_like(height: int, width: int) -> torch.Tensor:
    """A 3 x height x width uint8 image with a photo's mix of smooth shading and texture:
    low-frequency waves per channel plus pixel noise (seeded)."""
    g = torch.Generator().manual_seed(height * 1000 + width)
    y = torch.linspace(0, math.pi, height).view(-1, 1)
    x = torch.linspace(0, math.pi, width).view(1, -1)
    freq, phase = torch.rand(3, 3, generator=g) * 6 + 1, torch.rand(3, 3, generator=g) * 6
    waves = torch.stack(
        [
            (f[0] * x + p[0]).sin() * (f[1] * y + p[1]).cos() + (f[2] * (x + y) + p[2]).sin()
            for f, p in zip(freq, phase, strict=True)
        ]
    )
    image = 128 + 50 * waves + 20 * torch.randn(waves.shape, generator=g)
    return image.clamp(0, 255).round().to(torch.uint8)


def in_pixels(normalized: torch.Tensor, std) -> torch.Tensor:
    """A difference of normalised images back in 0-255 pixel units."""
    return normalized * torch.tensor(std).view(3, 1, 1) * 255


# --- predict ------------------------------------------------------------------------


def test_predict_cli_prints_one_json_line_per_image(trained, tmp_path: Path):
    result = run_entry_point(
        "predict.py",
        f"ckpt_path={trained['ckpt']}",
        f"images=[{trained['single']},{trained['photos'] / 'album'}/]",
        "output=json",
        cwd=tmp_path,
    )
    records = [json.loads(line) for line in result.stdout.splitlines()]  # stdout: JSON only
    album = trained["photos"] / "album"
    assert [r["image"] for r in records] == [str(trained["single"])] + [
        f"{album}/{k}.jpg" for k in range(3)
    ]
    for record in records:
        top = record["top5"]
        assert len(top) == 3 and {t["label"] for t in top} == set(CLASSES)  # all 3 classes
        probs = [t["prob"] for t in top]
        assert probs == sorted(probs, reverse=True)
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)  # softmax over every class


def test_predict_text_output_names_labels_with_percentages(trained, tmp_path: Path, capsys):
    cfg = predict_config(tmp_path, f"ckpt_path={trained['ckpt']}", f"images={trained['single']}")
    summary = predict(cfg)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(trained["single"]) and len(lines) == 4
    for line in lines[1:]:
        percent, label = line.split()
        assert percent.endswith("%") and label in CLASSES
    assert summary == {
        "images": 1,
        "unreadable": 0,
        "predictions": str(tmp_path / "out" / "predictions.jsonl"),
    }


def test_predict_matches_the_checkpoints_own_eval_pipeline(trained, tmp_path: Path):
    classifier = Classifier.from_checkpoint(str(trained["ckpt"]))
    assert (classifier.crop_size, classifier.resize_size) == (32, 37)
    image = torch.randint(0, 256, (3, 37, 37), dtype=torch.uint8)  # already resize_size
    expected = classifier.model(BatchNormalizer(pca_std=0.0)(TF.center_crop(image, [32, 32])[None]))
    assert torch.allclose(classifier.probabilities([image]), expected.softmax(-1), atol=1e-6)


def test_checkpoint_inference_resizes_a_large_non_square_photo_to_its_centre_crop(trained):
    """The checkpoint's path on an image that needs resizing (not only a crop): its centre
    crop is torchvision's Resize(shorter side) + CenterCrop of the same photo, up to the
    half source pixel that cutting the window from the source first may move it by."""
    classifier = Classifier.from_checkpoint(str(trained["ckpt"]))
    resize, crop = classifier.resize_size, classifier.crop_size  # 37, 32
    for photo in (photo_like(375, 500), photo_like(500, 375)):
        reference = TF.center_crop(TF.resize(photo, resize, antialias=True), [crop, crop])
        normalize = BatchNormalizer(classifier.mean, classifier.std, pca_std=0.0)
        batch = classifier.preprocess([photo])
        assert batch.shape == (1, 3, crop, crop)
        error = in_pixels(batch[0] - normalize(reference[None])[0], classifier.std).abs()
        # Measured: 1.4 and 1.8 levels on average (the resize's filter at the window's edge
        # sees no pixels beyond it). A crop one pixel right of the centre is 9.5 and 16 off.
        assert error.mean() < 3
        resized = TF.resize(photo, resize, antialias=True)
        top, left = ((size - crop) // 2 for size in resized.shape[-2:])
        one_right = TF.crop(resized, top, left + 1, crop, crop)
        assert (one_right.float() - reference.float()).abs().mean() > 3
        expected = classifier.model(batch).softmax(-1)
        torch.testing.assert_close(classifier.probabilities([photo]), expected)


def test_ten_crop_averages_the_papers_ten_views(trained):
    classifier = Classifier.from_checkpoint(str(trained["ckpt"]))
    image = torch.randint(0, 256, (3, 37, 37), dtype=torch.uint8)
    views = torch.stack(TF.ten_crop(image, [32, 32]))  # 4 corners, centre, and their flips
    per_view = classifier.model(BatchNormalizer(pca_std=0.0)(views)).softmax(-1)
    ten = classifier.probabilities([image], tta="ten_crop")
    assert torch.allclose(ten[0], per_view.mean(0), atol=1e-6)
    assert not torch.allclose(ten, classifier.probabilities([image], tta="center"))


def test_unreadable_images_are_reported_and_the_rest_classified(trained, tmp_path: Path, capsys):
    (broken := tmp_path / "broken.jpg").write_bytes(trained["single"].read_bytes()[:200])
    cfg = predict_config(
        tmp_path,
        f"ckpt_path={trained['ckpt']}",
        f"images=[{broken},{trained['single']}]",
        "output=json",
        "tta=ten_crop",
    )
    summary = predict(cfg)
    first, second = (json.loads(x) for x in capsys.readouterr().out.splitlines())
    assert first == {"image": str(broken), "error": "Image is incomplete or truncated"}
    assert len(second["top5"]) == 3 and summary["unreadable"] == 1


def test_folders_are_searched_for_images_only(trained):
    found = find_images([str(trained["photos"])])
    assert [p.name for p in found] == ["single.JPEG", "0.jpg", "1.jpg", "2.jpg"]
    with pytest.raises(DataError, match="does not exist"):
        find_images([str(trained["photos"] / "nope.jpg")])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], "Give one of ckpt_path"),
        (["weights=w.pth", "ckpt_path=x.ckpt"], "Give one of ckpt_path"),
        (["weights=w.pth"], "add model=alexnet_owt"),
        (["ckpt_path=x.ckpt", "output=xml"], "output=xml: use text or json"),
        (["ckpt_path=x.ckpt", "tta=five_crop"], "tta=five_crop"),
        (["weights=w.pth", "model=alexnet_owt", "model.input_size=227"], "224x224 crops"),
    ],
)
def test_predict_config_errors_are_clear(overrides, message, trained, tmp_path: Path):
    (tmp_path / "w.pth").write_bytes(b"")
    cfg = predict_config(tmp_path, f"images={trained['single']}", *overrides)
    with pytest.raises(ConfigError, match=message):
        predict(cfg)


# --- torchvision's pretrained weights --------------------------------------------------


def test_imagenet_class_names_ship_with_the_package():
    names = imagenet_classes()
    assert len(names) == 1000 and names[0] == "tench" and names[-1] == "toilet tissue"
    assert names == torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta["categories"]


TORCHVISION_TRANSFORM = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.transforms()


@pytest.fixture(scope="module")
def torchvision_weights(tmp_path_factory) -> dict:
    """torchvision's AlexNet with random weights (nothing downloaded), its state_dict file,
    and a 500x375 photo-sized image."""
    torch.manual_seed(0)
    reference = torchvision.models.alexnet(weights=None).eval()
    path = tmp_path_factory.mktemp("weights") / "alexnet-owt.pth"
    torch.save(reference.state_dict(), path)
    return {"reference": reference, "path": path, "photo": photo_like(375, 500)}


def test_torchvision_weights_give_torchvisions_probabilities(
    torchvision_weights, tmp_path: Path, capsys
):
    photo = torchvision_weights["photo"]
    write_file(str(path := tmp_path / "photo.png"), torchvision.io.encode_png(photo))
    weights = torchvision_weights["path"]
    cfg = predict_config(
        tmp_path, "model=alexnet_owt", f"weights={weights}", f"images={path}", "output=json"
    )
    predict(cfg)
    (record,) = (json.loads(x) for x in capsys.readouterr().out.splitlines())

    # torchvision's own recipe for these weights on the same pixels.
    with torch.no_grad():
        logits = torchvision_weights["reference"](TORCHVISION_TRANSFORM(photo)[None])
    top = logits.softmax(-1)[0].topk(5)
    names = imagenet_classes()
    assert [t["label"] for t in record["top5"]] == [names[i] for i in top.indices]
    # Relative 1e-5: the window crop these weights got before is 1.5e-4 off here.
    assert [t["prob"] for t in record["top5"]] == pytest.approx(top.values.tolist(), rel=1e-5)


def test_torchvision_weights_get_torchvisions_own_transform(torchvision_weights, tmp_path: Path):
    """Resize the shorter side to 256, then the centre 224: not a window cut from the source."""
    cfg = predict_config(tmp_path, "model=alexnet_owt", "images=x")
    path = str(torchvision_weights["path"])
    classifier = Classifier.from_torchvision_weights(path, dict(cfg.model), None)
    assert (classifier.resize_size, classifier.crop_size) == (256, 224)
    assert (list(classifier.mean), list(classifier.std)) == (
        TORCHVISION_TRANSFORM.mean,
        TORCHVISION_TRANSFORM.std,
    )
    photo = torchvision_weights["photo"]
    expected = TORCHVISION_TRANSFORM(photo)
    # 1e-6 in normalised units is 2e-4 of a pixel level: the same pixels.
    torch.testing.assert_close(classifier.preprocess([photo])[0], expected, rtol=0, atol=1e-6)
    # ten_crop: torchvision's resize, then the corners and centre of it and of its mirror.
    views = classifier.preprocess([photo], tta="ten_crop")[0]
    assert views.shape == (10, 3, 224, 224)
    torch.testing.assert_close(views[4], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(views[5], views[1].flip(-1), rtol=0, atol=0)  # top corners
    # torchvision's transform of the mirrored photo: its resize rounds 12 of the 150528
    # values one pixel level the other way.
    one_level = 1.001 / 255 / min(TORCHVISION_TRANSFORM.std)
    mirrored = TORCHVISION_TRANSFORM(photo.flip(-1))
    torch.testing.assert_close(views[9], mirrored, rtol=0, atol=one_level)
    # What these weights got before: the crop's source window, then resized. Measured
    # 4.5 pixel levels off on average on this image, far outside the tolerance above.
    window = EvalTransform(256, 224)(photo)[None]
    before = BatchNormalizer(classifier.mean, classifier.std, pca_std=0.0)(window)[0]
    assert in_pixels(before - expected, classifier.std).abs().mean() > 1


def test_weights_that_do_not_fit_or_run_code_are_refused(trained, tmp_path: Path):
    cfg = predict_config(tmp_path, "model=alexnet_owt", f"images={trained['single']}")
    torch.save(torchvision.models.alexnet(num_classes=10).state_dict(), ten := tmp_path / "t.pth")
    with pytest.raises(CheckpointError, match="does not fit model=alexnet_owt with 1000 classes"):
        Classifier.from_torchvision_weights(str(ten), dict(cfg.model), None)
    with pytest.raises(CheckpointError, match="pass it as ckpt_path="):
        Classifier.from_torchvision_weights(str(trained["ckpt"]), dict(cfg.model), None)

    marker = tmp_path / "pwned"

    class RunsCode:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(hostile := tmp_path / "hostile.pth", "wb") as f:
        pickle.dump({"features.0.weight": RunsCode()}, f)
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        Classifier.from_torchvision_weights(str(hostile), dict(cfg.model), None)
    assert not marker.exists()


# --- export -------------------------------------------------------------------------


def export_config(tmp_path: Path, ckpt: Path, fmt: str, *extra: str):
    out = tmp_path / f"alexnet.{fmt}"
    overrides = [f"ckpt_path={ckpt}", f"format={fmt}", f"output={out}", *extra]
    return compose_config(overrides, tmp_path / "run", config_name="export"), out


def checkpoint_logits(ckpt: Path, images: torch.Tensor) -> torch.Tensor:
    """What the training pipeline computes: on-device normalisation, then the network."""
    classifier = Classifier.from_checkpoint(str(ckpt))
    with torch.no_grad():
        return classifier.model(BatchNormalizer(classifier.mean, classifier.std, 0.0)(images))


def test_torchscript_export_gives_the_checkpoints_logits(trained, tmp_path: Path):
    cfg, path = export_config(tmp_path, trained["ckpt"], "torchscript")
    summary = export(cfg)
    assert summary["path"] == str(path) and summary["crop_size"] == 32
    extra = {METADATA_FILE: ""}
    module = torch.jit.load(str(path), _extra_files=extra)
    meta = json.loads(extra[METADATA_FILE])
    assert meta["class_names"] == CLASSES and meta["resize_size"] == 37
    assert "source pixels cut out" in meta["preprocessing"]

    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    expected = checkpoint_logits(trained["ckpt"], images)
    with torch.no_grad():
        torch.testing.assert_close(module(images), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(module(images.float() / 255), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime")),
    reason="ONNX export needs the export extra: pip install -e '.[export]'",
)
def test_onnx_export_gives_the_checkpoints_logits(trained, tmp_path: Path):
    import onnx
    import onnxruntime

    cfg, path = export_config(tmp_path, trained["ckpt"], "onnx")
    export(cfg)
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    assert meta["class_names"] == CLASSES and meta["crop_size"] == 32

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)  # another batch size
    (logits,) = session.run(None, {"images": images.numpy()})
    expected = checkpoint_logits(trained["ckpt"], images)
    torch.testing.assert_close(torch.from_numpy(logits), expected, rtol=1e-4, atol=1e-4)


def test_export_cli_rejects_an_unknown_format(trained, tmp_path: Path):
    cfg, _ = export_config(tmp_path, trained["ckpt"], "tflite")
    with pytest.raises(ConfigError, match="format=tflite: use torchscript or onnx"):
        export(cfg)


def test_export_needs_a_checkpoint_or_weights(tmp_path: Path):
    cfg = compose_config(["format=torchscript"], tmp_path / "run", config_name="export")
    with pytest.raises(ConfigError, match="Give one of ckpt_path"):
        export(cfg)


def test_export_of_torchvision_weights_declares_torchvisions_preprocessing(
    torchvision_weights, tmp_path: Path
):
    overrides = ["model=alexnet_owt", f"weights={torchvision_weights['path']}"]
    out = tmp_path / "alexnet.pt"
    cfg = compose_config([*overrides, f"output={out}"], tmp_path / "run", config_name="export")
    export(cfg)
    extra = {METADATA_FILE: ""}
    module = torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra[METADATA_FILE])
    assert (meta["resize_size"], meta["crop_size"]) == (256, 224)
    assert (meta["mean"], meta["std"]) == (TORCHVISION_TRANSFORM.mean, TORCHVISION_TRANSFORM.std)
    assert "AlexNet_Weights.IMAGENET1K_V1.transforms()" in meta["preprocessing"]
    assert meta["class_names"] == imagenet_classes()

    # The uint8 crop the metadata describes, through the file: torchvision's logits.
    photo = torchvision_weights["photo"]
    crop = TF.center_crop(TF.resize(photo, 256, antialias=True), [224, 224])
    with torch.no_grad():
        expected = torchvision_weights["reference"](TORCHVISION_TRANSFORM(photo)[None])
        torch.testing.assert_close(module(crop[None]), expected, rtol=1e-4, atol=1e-4)
