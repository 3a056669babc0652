"""The fixtures every test shares (helpers/project.py holds the functions they call).

Nothing here touches the network: W&B is forced offline and data is generated.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.project import make_image_folder

os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def environment_restored():
    """What a test (or the code it runs: Lightning's seed_everything sets PL_GLOBAL_SEED,
    W&B its WANDB_* keys) changes in os.environ is undone before the next test; a test
    that means to change it uses monkeypatch. Wider fixtures' changes are kept: they were
    made before this snapshot."""
    saved = dict(os.environ)
    yield
    for name in set(os.environ) - set(saved):
        del os.environ[name]
    os.environ.update(saved)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "imagenet_like")


@pytest.fixture(scope="session")
def shared_data_dir(tmp_path_factory) -> Path:
    """One data/ folder for the whole session, so the built-in dataset is written once."""
    return tmp_path_factory.mktemp("data")
