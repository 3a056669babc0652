"""optimizer.decay_biases: the paper presets decay weights only, as cuda-convnet's `wc` did;
elsewhere every parameter is decayed (torch.optim's default)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.project import compose_config
from omegaconf import open_dict

from alexnet_lab.checks import check_train_config
from alexnet_lab.errors import ConfigError
from alexnet_lab.training.module import AlexNetClassifier

NET = {"_target_": "alexnet_lab.models.AlexNet", "arch": "alexnet_small", "init": "paper"}
SGD = {"_target_": "torch.optim.SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}


def optimizer_for(**optimizer_keys) -> tuple[AlexNetClassifier, torch.optim.Optimizer]:
    model = AlexNetClassifier(NET, {**SGD, **optimizer_keys}, class_names=list("abc"))
    return model, model.configure_optimizers()


def names_in(model: AlexNetClassifier, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def test_decay_biases_false_decays_weights_only():
    model, optimizer = optimizer_for(decay_biases=False)
    weights, biases = optimizer.param_groups
    # alexnet_small: 5 convs and 3 fc layers, one weight and one bias each.
    assert len(weights["params"]) == len(biases["params"]) == 8
    assert (weights["weight_decay"], biases["weight_decay"]) == (5e-4, 0.0)
    assert all(name.endswith(".weight") for name in names_in(model, weights))
    assert all(name.endswith(".bias") for name in names_in(model, biases))
    assert (
        names_in(model, weights) | names_in(model, biases) == dict(model.named_parameters()).keys()
    )
    # The other settings apply to both groups.
    assert all((g["lr"], g["momentum"]) == (0.01, 0.9) for g in optimizer.param_groups)

    # One step with zero gradients: only the decay moves anything, and only the weights.
    bias_one = model.net.features[4].bias  # conv2, initialised to 1 by the paper's init
    assert torch.all(bias_one == 1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        if name.endswith(".bias"):
            assert torch.equal(p, before[name]), name
        else:
            torch.testing.assert_close(p, before[name] * (1 - 0.01 * 5e-4))


@pytest.mark.parametrize("keys", [{"decay_biases": True}, {}], ids=["true", "absent"])
def test_decay_biases_true_or_absent_decays_every_parameter(keys):
    model, optimizer = optimizer_for(**keys)
    (group,) = optimizer.param_groups
    assert group["weight_decay"] == 5e-4 and len(group["params"]) == 16
    assert names_in(model, group) == dict(model.named_parameters()).keys()


@pytest.mark.parametrize(
    ("overrides", "decay_biases"),
    [
        ([], True),
        (["experiment=imagenet_paper", "data.root=/x", "trainer.accelerator=cpu"], False),
        (["experiment=study_small"], False),
    ],
)
def test_paper_presets_decay_weights_only(overrides, decay_biases, tmp_path: Path):
    cfg = compose_config(overrides, tmp_path)
    assert cfg.optimizer.decay_biases is decay_biases
    check_train_config(cfg)  # the key passes the checks


def test_a_non_bool_decay_biases_is_a_clear_error(tmp_path: Path):
    cfg = compose_config(["optimizer.decay_biases=no"], tmp_path)
    with pytest.raises(ConfigError, match="optimizer.decay_biases='no': use true"):
        check_train_config(cfg)
    with open_dict(cfg):
        cfg.optimizer.decay_biases = 1
    with pytest.raises(ConfigError, match="optimizer.decay_biases=1: use true"):
        check_train_config(cfg)
    with pytest.raises(ConfigError, match="optimizer.decay_biases='no'"):
        optimizer_for(decay_biases="no")
