"""Every config group option composes with every backend, and the schema rejects bad input."""

from __future__ import annotations

import importlib.resources
import itertools

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

GROUPS = ("model", "data", "rollout", "algorithm", "trainer", "backend")


def options(group: str) -> list[str]:
    folder = importlib.resources.files("core.conf") / group
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), group
    assert {"cpu", "cuda", "rocm"} <= set(options("backend"))


@pytest.mark.parametrize("group", [g for g in GROUPS if g != "backend"])
def test_every_option_composes_with_every_backend(group, compose_config):
    for option, backend in itertools.product(options(group), options("backend")):
        cfg = compose_config(f"{group}={option}", f"+backend={backend}")
        assert cfg.backend.name == backend
        assert cfg[group] is not None


def test_no_backend_in_primary_config(compose_config):
    cfg = compose_config()
    assert cfg.backend.name == "cpu"  # the schema's default; core.main adds the detected backend


def test_backend_yaml_values_land_in_backend_node(compose_config):
    cfg = compose_config("+backend=cuda")
    assert cfg.backend.engine == "vllm"


@pytest.mark.parametrize(
    "override, culprit",
    [
        ("trainer.no_such_key=1", "no_such_key"),
        ("trainer.total_steps=many", "total_steps"),
        ("rollout.n=two", "n"),
    ],
)
def test_schema_rejects_bad_keys_and_types(override, culprit, compose_config):
    with pytest.raises((ConfigCompositionException, ConfigKeyError, ValidationError)) as info:
        compose_config(override)
    assert culprit in str(info.value)
