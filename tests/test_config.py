"""Every config group option composes with every backend, and the schema rejects bad input."""

from __future__ import annotations

import importlib.resources
import itertools

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

GROUPS = ("model", "data", "rollout", "algorithm", "trainer", "backend")


def options(group: str) -> list[str]:
    """A group's options: core's files, and for `backend` every installed backend's own too."""
    packages = ["core.conf"]
    if group == "backend":
        from core.plugins.manager import installed_backends

        packages += [b.config_searchpath.removeprefix("pkg://") for b in installed_backends() if b.config_searchpath]
    folders = [importlib.resources.files(package) / group for package in packages]
    return sorted(p.name.removesuffix(".yaml") for folder in folders if folder.is_dir()
                  for p in folder.iterdir() if p.name.endswith(".yaml"))


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


def _leaves(node, prefix=""):
    """(dotted key, value) for every leaf of a yaml mapping, its `defaults` list left out."""
    for key, value in node.items():
        if key == "defaults":
            continue
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _own_values(group: str, option: str):
    from omegaconf import OmegaConf

    text = (importlib.resources.files("core.conf") / group / f"{option}.yaml").read_text()
    return list(_leaves(OmegaConf.to_container(OmegaConf.create(text))))


@pytest.mark.parametrize("option", options("data"))
def test_every_data_option_keeps_its_own_values(option, compose_config):
    """A task sets its response length, validation frequency and reward: no later default overrides them."""
    from omegaconf import OmegaConf

    cfg = compose_config(f"data={option}", "+backend=cpu")
    values = _own_values("data", option)
    assert values
    for key, value in values:
        assert OmegaConf.select(cfg, key) == value, f"data={option}: {key}"


@pytest.mark.parametrize("option", options("experiment"))
def test_every_experiment_composes_and_keeps_its_values(option, compose_config):
    from omegaconf import OmegaConf

    for backend in options("backend"):
        cfg = compose_config(f"+experiment={option}", f"+backend={backend}")
        for key, value in _own_values("experiment", option):
            assert OmegaConf.select(cfg, key) == value, f"+experiment={option}: {key}"


def test_smollm2_experiment_selects_the_real_model_and_task(compose_config):
    cfg = compose_config("+experiment=smollm2_arithmetic", "+backend=cuda")
    assert cfg.model.path == "packaged:smollm2-135m-instruct"
    assert cfg.data.task == "reasoning_gym" and cfg.reward.reward_fn == "graded"
    assert cfg.rollout.max_tokens == 48 and cfg.trainer.test_freq == 20
    assert cfg.eval.shifted == {"basic_arithmetic": {"min_terms": 3, "max_terms": 3}}


def test_gemma3_experiment_prompts_the_base_model_in_plain_text(compose_config):
    cfg = compose_config("+experiment=gemma3_arithmetic", "+backend=cuda")
    assert cfg.model.path == "packaged:gemma3-270m" and cfg.model.dtype == "float32"
    assert cfg.data.prompt_template == "Question: {content}\nAnswer:" and list(cfg.rollout.stop) == ["\n"]
    assert cfg.reward.reward_fn == "graded" and "basic_arithmetic" in cfg.eval.shifted


@pytest.mark.parametrize("group", ["algorithm", "model", "rollout", "trainer", "data"])
def test_an_unknown_option_lists_only_real_options(group, compose_config):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as err:
        compose_config(f"{group}=no_such_option")
    assert "_schema" not in str(err.value)


def test_own_data_is_scored_by_its_rows_data_source(compose_config):
    """`data=file`: not the demo's reward and 3-token replies, but each row's rule and room to answer."""
    from core.config.ranges import check_ranges
    from core.plugins.manager import get_plugin_manager
    from core.rewards.base import RewardInput
    from core.rewards.scoring import resolve_reward_fn

    cfg = compose_config("+backend=cpu", "data=file", "data.train_files=[train.parquet]")
    check_ranges(cfg)
    assert cfg.data.task == "file" and cfg.reward.reward_fn == "auto" and cfg.rollout.max_tokens == 256
    reward = resolve_reward_fn(cfg.reward.reward_fn, get_plugin_manager())
    assert reward(RewardInput("so 12 * 6 = 72\n#### 72", "72", data_source="openai/gsm8k")) == 1.0
    assert reward(RewardInput("the answer is \\boxed{\\frac34}", "0.75", data_source="math")) == 1.0
