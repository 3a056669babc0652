"""`tune.space`: the search space as config, and sampled values as Hydra overrides."""

from __future__ import annotations

import re
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from alexnet_lab.errors import ConfigError

SUGGEST = {"float": ("low", "high", "log", "step"), "int": ("low", "high", "log", "step")}
SUGGEST["categorical"] = ("choices",)


def search_space(space: DictConfig | None) -> dict[str, dict[str, Any]]:
    """`tune.space` as {dotted config key: spec}. Nested keys (optimizer: {lr: {...}})
    and dotted ones (optimizer.lr: {...}) both work; a node with `type` is a parameter."""
    params: dict[str, dict[str, Any]] = {}

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if not isinstance(value, DictConfig):
                raise ConfigError(
                    f"tune.space.{name}={value!r} is not a parameter: give it as "
                    f"{{type: float|int|categorical, ...}}, e.g. "
                    f"{{type: float, low: 1e-3, high: 0.1, log: true}}."
                )
            if "type" in value:
                params[name] = OmegaConf.to_container(value, resolve=True)
            else:
                walk(value, f"{name}.")

    walk(space or {}, "")
    if not params:
        raise ConfigError("tune.space is empty: give at least one parameter to tune.")
    for name, spec in params.items():
        distribution(name, spec)  # a bad spec fails here, before any trial runs
    return params


def distribution(name: str, spec: dict[str, Any]) -> optuna.distributions.BaseDistribution:
    kind = spec.get("type")
    if kind not in SUGGEST:
        raise ConfigError(f"tune.space.{name}: type={kind!r}; use float, int or categorical.")
    unknown = set(spec) - {"type", *SUGGEST[kind]}
    if unknown:
        raise ConfigError(
            f"tune.space.{name} ({kind}) does not take {', '.join(sorted(unknown))}; "
            f"it takes {', '.join(SUGGEST[kind])}. To change a parameter's type, replace it: "
            f"'~tune.space.{name}' '+tune.space.{name}={{...}}'."
        )
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    try:
        if kind == "categorical":
            return optuna.distributions.CategoricalDistribution(kwargs["choices"])
        cls = optuna.distributions.FloatDistribution
        if kind == "int":
            cls = optuna.distributions.IntDistribution
        return cls(**kwargs)
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"tune.space.{name}={spec}: {err}") from None


def suggest(trial: optuna.Trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    params = {}
    for name, spec in space.items():
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        params[name] = getattr(trial, f"suggest_{spec['type']}")(name, **kwargs)
    return params


def hydra_value(value: Any) -> str:
    """A sampled value as a Hydra override value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if re.fullmatch(r"[\w.\-/]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
