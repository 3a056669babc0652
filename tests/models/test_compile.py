"""model.compile=true: the network (only) is compiled in place, so checkpoints keep the
plain `net.*` keys and load into an uncompiled model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.project import compose_config, make_image_folder

from alexnet_lab.runs import run_task
from alexnet_lab.tasks import train
from alexnet_lab.training.module import AlexNetClassifier
from alexnet_lab.training.restore import load_checkpoint, model_from_checkpoint

NET = {"_target_": "alexnet_lab.models.AlexNet", "arch": "alexnet_small", "input_size": 32}
SGD = {"_target_": "torch.optim.SGD", "lr": 0.01}


def test_compile_flag_compiles_the_net_in_place_and_keeps_state_dict_keys():
    model = AlexNetClassifier({**NET, "compile": True}, SGD, class_names=list("abc"))
    keys = list(model.state_dict())
    model.configure_model()
    model.configure_model()  # Lightning may call it again: compiles once
    assert getattr(model.net, "_compiled_call_impl", None) is not None
    assert list(model.state_dict()) == keys and all(k.startswith("net.") for k in keys)
    plain = AlexNetClassifier(NET, SGD, class_names=list("abc"))
    plain.configure_model()
    assert getattr(plain.net, "_compiled_call_impl", None) is None


@pytest.mark.slow  # inductor compiles C++ for the CPU: a minute or two
def test_compiled_training_run_checkpoint_loads_uncompiled(tmp_path: Path):
    root = make_image_folder(tmp_path / "tree", per_class=4, size=(36, 44))
    overrides = [
        "data=folder",
        f"data.root={root}",
        "data.batch_size=6",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "logger=csv",
        "model.compile=true",
    ]
    summary = run_task(train, compose_config(overrides, tmp_path))
    assert summary["status"] == "completed"
    model = model_from_checkpoint(load_checkpoint(summary["last_checkpoint"]))
    assert getattr(model.net, "_compiled_call_impl", None) is None  # eval runs it eagerly
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
