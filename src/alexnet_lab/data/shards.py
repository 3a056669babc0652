"""`prepare format=litdata`: the paper's stored images as LitData shards.

Two resumable steps. `prepare_tree` writes the 256x256 JPEG tree under DST/jpeg (in
parallel; unreadable files listed in DST/jpeg/prepare_failed.txt); then `litdata.optimize`
packs each split of that tree into DST/<split>/ chunks, one record per image:

    image: the JPEG file's bytes, unchanged (training decodes them as it decodes files)
    label: the class index (classes in sorted folder order, as ImageFolderDataModule)
    index: the image's position in its split (sorted by class, then file name)
    name:  its path relative to the split, e.g. n01440764/n01440764_10026.JPEG

DST/classes.json, written last, holds the class list and each split's image count: a
folder without it is not a finished dataset. A split whose index.json exists is complete
and not packed again; an interrupted one continues from litdata's checkpoints.
Data.root=DST then streams the shards (alexnet_lab.data.stream); DST/jpeg is the same
images as a folder tree (data=folder data.root=DST/jpeg), deletable once the shards exist.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from alexnet_lab.data.folders import check_same_classes, check_split_dir, find_classes, list_images
from alexnet_lab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
CLASSES_FILE = "classes.json"
TREE_DIR = "jpeg"
INDEX_FILE = "index.json"
# ~64 MB chunks: what litdata recommends for object storage (one GET per ~2,500 images).
CHUNK_BYTES = "64MB"
INSTALL_HINT = "litdata is not installed: pip install -e '.[stream]' (make install does it)."


def import_litdata():
    try:
        import litdata
    except ImportError:
        raise ConfigError(f"format=litdata / data=stream: {INSTALL_HINT}") from None
    return litdata


def is_url(root: str) -> bool:
    return "://" in str(root)


def join(root: str, *parts: str) -> str:
    """root/part/...: a URL keeps its scheme and slashes, a path is expanded."""
    if is_url(root):
        return "/".join([str(root).rstrip("/"), *parts])
    return str(Path(root).expanduser().joinpath(*parts))


def check_root_url(root: str) -> None:
    """Object-store roots carry no credentials: those come from the environment only."""
    if not is_url(root):
        return
    parsed = urlparse(str(root))
    if parsed.username or parsed.password:
        raise ConfigError(
            f"data.root={parsed.scheme}://...@{parsed.hostname}{parsed.path} holds credentials: "
            f"they would be saved in the run's config and checkpoints. Pass the plain URL "
            f"({parsed.scheme}://{parsed.hostname}{parsed.path}) and set the credentials in "
            f"the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL)."
        )


def shard_record(item: tuple[str, int, int, str]) -> dict[str, Any]:
    """One image's record (runs in litdata's worker processes)."""
    path, label, index, name = item
    return {"image": Path(path).read_bytes(), "label": label, "index": index, "name": name}


def packed_count(split_dir: Path) -> int | None:
    """Images in a complete packed split (its index.json), None when not packed yet."""
    index_file = split_dir / INDEX_FILE
    if not index_file.is_file():
        return None
    chunks = json.loads(index_file.read_text())["chunks"]
    return sum(int(chunk["chunk_size"]) for chunk in chunks)


def pack_split(
    tree: Path, split: str, out: Path, classes: list[str], workers: int, progress: bool
) -> dict[str, Any]:
    """Pack tree/<split> into out/<split> (skipped when already complete and current)."""
    samples = list_images(tree / split, classes)
    if not samples:
        raise DataError(f"{tree / split} has no images to pack: did prepare convert any?")
    split_dir = out / split
    done = packed_count(split_dir)
    if done is not None:
        if done != len(samples):
            raise DataError(
                f"{split_dir} holds {done} packed images but {tree / split} has {len(samples)}: "
                f"the tree changed after packing. Delete {split_dir} and run prepare again."
            )
        return {"images": done, "packed": False}
    inputs = [
        (path, label, index, os.path.relpath(path, tree / split))
        for index, (path, label) in enumerate(samples)
    ]
    import_litdata().optimize(
        fn=shard_record,
        inputs=inputs,
        output_dir=str(split_dir),
        chunk_bytes=CHUNK_BYTES,
        num_workers=min(workers, len(inputs)),
        reorder_files=False,  # records in index order, so shards read back in a known order
        use_checkpoint=True,  # an interrupted pack continues where it stopped
        start_method="fork",  # litdata sets it process-wide; fork is Linux's default anyway
        verbose=progress,
    )
    count = packed_count(split_dir)
    if count != len(samples):
        raise DataError(f"Packing {tree / split} wrote {count} of {len(samples)} images.")
    return {"images": count, "packed": True}


def write_shards(
    tree: str | Path,
    dst: str | Path,
    workers: int | None = None,
    progress: bool = True,
    stored_form: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pack a prepared tree (tree/{train,val}/<class>/*.JPEG) into dst as LitData shards."""
    tree, dst = Path(tree).expanduser(), Path(dst).expanduser()
    classes = find_classes(check_split_dir(tree, "train"))
    check_same_classes(classes, find_classes(check_split_dir(tree, "val")), tree)
    workers = workers or os.cpu_count() or 1
    splits = {split: pack_split(tree, split, dst, classes, workers, progress) for split in SPLITS}
    manifest = {
        "format": "litdata",
        "classes": classes,
        "images": {split: info["images"] for split, info in splits.items()},
        **(stored_form or {}),
    }
    tmp = dst / f".{CLASSES_FILE}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, dst / CLASSES_FILE)
    return {
        "shards": str(dst),
        "shard_images": manifest["images"],
        "packed_splits": [split for split, info in splits.items() if info["packed"]],
    }


def read_manifest(root: str) -> dict[str, Any]:
    """ROOT/classes.json, from a folder or an object store (credentials from the environment)."""
    path = join(root, CLASSES_FILE)
    try:
        if is_url(root):
            # litdata's own client for the URL's scheme (s3, gs, r2): the same credentials
            # and endpoint that stream the chunks.
            from litdata.streaming.fs_provider import _get_fs_provider

            with tempfile.TemporaryDirectory() as tmp:
                local = os.path.join(tmp, CLASSES_FILE)
                _get_fs_provider(path).download_file(path, local)
                text = Path(local).read_text()
        else:
            text = Path(path).read_text()
    except FileNotFoundError:
        text = None
    except Exception as err:  # the cloud SDKs raise their own types (NoSuchKey, 403, ...)
        if "404" not in str(err) and "NoSuchKey" not in type(err).__name__ + str(err):
            raise DataError(
                f"Cannot read {path}: {type(err).__name__}: {str(err)[:300]}. For object storage, "
                f"check the URL and the credentials in the environment (AWS_ACCESS_KEY_ID, "
                f"AWS_SECRET_ACCESS_KEY, and AWS_ENDPOINT_URL for S3-compatible servers)."
            ) from None
        text = None
    if text is None:
        raise DataError(
            f"{path} does not exist: data.root must be the output of `python src/prepare.py "
            f"src=RAW dst=OUT format=litdata` (OUT/classes.json, OUT/train/, OUT/val/), run to "
            f"the end. For a folder of images use data=folder."
        )
    manifest = json.loads(text)
    if not manifest.get("classes"):
        raise DataError(f"{path} lists no classes: run prepare format=litdata again.")
    return manifest
