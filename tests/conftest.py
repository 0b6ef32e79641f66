"""Shared fixtures. Tests run single-threaded: two threads on two shared cores give 10x spikes."""

from __future__ import annotations

import faulthandler
import os
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
# builtin models are built once per test session, never into the user's ~/.cache
os.environ.setdefault("TANDEM_CACHE", tempfile.mkdtemp(prefix="tandem-test-cache-"))
faulthandler.enable()

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir() -> str:
    from core.models.builtin import resolve_model_path

    return resolve_model_path("builtin:tiny-qwen2")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def compose_config():
    """compose_config(*overrides) -> the composed DictConfig, exactly as `python -m core.main` sees it."""
    from hydra import compose, initialize_config_module

    from core.config.schema import register_schemas

    register_schemas()

    def _compose(*overrides: str):
        with initialize_config_module(config_module="core.conf", version_base=None):
            return compose("config", overrides=list(overrides))

    return _compose
