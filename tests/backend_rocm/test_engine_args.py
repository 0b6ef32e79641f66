"""The vLLM arguments `+backend=rocm` composes (AMD's notes) and the sleep-mode fallbacks."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from backend_rocm import sleep_mode
from backend_rocm.engine_args import plan_sleep
from backend_rocm.rebuild_engine import RebuildPerRolloutEngine
from core.errors import TandemError
from core.plugins.manager import load_backend
from core.rollout.base import EngineTarget
from core.rollout.vllm_args import engine_args_from_config

NOTES_CAPTURE_SIZES = [1, 2, 4, 8, 16, 32, 64]


@pytest.fixture(autouse=True)
def _fresh_sleep_announcement():
    sleep_mode._announce.cache_clear()  # each test sees its own "logged once" message


@pytest.fixture
def rocm_args(compose_config, fake_vllm, sleep_support, tmp_path):
    """rocm_args(*overrides, version=, sleep=, model_config=) -> (cfg, LLM kwargs) for +backend=rocm."""

    def _args(*overrides, version="0.11.1+rocm700", sleep=True, model_config=None):
        fake_vllm(version)
        sleep_support(sleep, "this vLLM build has no cumem_allocator extension")
        (tmp_path / "config.json").write_text(json.dumps(model_config or {"model_type": "qwen2"}))
        cfg = compose_config("+backend=rocm", *overrides)
        return cfg, engine_args_from_config(cfg, EngineTarget.from_config(cfg, str(tmp_path)), load_backend("rocm"))

    return _args


def test_single_node_gets_the_notes_values(rocm_args):
    _, args = rocm_args()
    assert args["compilation_config"] == {"cudagraph_capture_sizes": NOTES_CAPTURE_SIZES}
    assert args["disable_custom_all_reduce"] is True
    assert args["enable_prefix_caching"] is True
    assert args["skip_tokenizer_init"] is False
    assert args["enforce_eager"] is False
    assert args["enable_sleep_mode"] is True
    assert "disable_mm_preprocessor_cache" not in args  # text-only model: vLLM >= 0.9 rejects the flag


@pytest.mark.parametrize("override", ["trainer.nnodes=2", "backend.settings.nnodes=2"])
def test_multi_node_v1_runs_eager_and_says_why(rocm_args, caplog, override):
    with caplog.at_level(logging.WARNING, logger="tandem.rocm"):
        _, args = rocm_args(override)
    assert args["enforce_eager"] is True
    assert "compilation_config" not in args
    assert "CUDA graphs are off (eager mode) for this 2-node run" in caplog.text


def test_multi_node_graphs_can_be_forced_and_v0_keeps_them(rocm_args, monkeypatch):
    _, forced = rocm_args("backend.settings.nnodes=2", "backend.settings.multi_node_cuda_graphs=true")
    assert forced["enforce_eager"] is False
    monkeypatch.setenv("VLLM_USE_V1", "0")
    _, v0 = rocm_args("backend.settings.nnodes=2", version="0.8.5+rocm634")
    assert v0["enforce_eager"] is False and v0["compilation_config"]["cudagraph_capture_sizes"] == NOTES_CAPTURE_SIZES


def test_capture_sizes_configurable_and_rollout_wins(rocm_args):
    _, from_yaml = rocm_args("backend.settings.cudagraph_capture_sizes=[1,8]")
    assert from_yaml["compilation_config"] == {"cudagraph_capture_sizes": [1, 8]}
    _, from_rollout = rocm_args("rollout.cudagraph_capture_sizes=[4,2]")
    assert from_rollout["compilation_config"] == {"cudagraph_capture_sizes": [2, 4]}
    _, eager = rocm_args("rollout.enforce_eager=true")
    assert "compilation_config" not in eager


@pytest.mark.parametrize("version, expected", [("0.11.1+rocm700", {"disable_mm_preprocessor_cache": True}),
                                               ("0.13.0", {"mm_processor_cache_gb": 0})])
def test_multimodal_models_disable_the_preprocessor_cache(rocm_args, version, expected):
    _, args = rocm_args(version=version, model_config={"model_type": "qwen2_vl", "vision_config": {}})
    assert expected.items() <= args.items()


def test_resident_fallback_without_sleep_mode(rocm_args, caplog):
    with caplog.at_level(logging.WARNING, logger="tandem.rocm"):
        cfg, args = rocm_args(sleep=False)
        rocm_args(sleep=False)  # a second engine: the choice is not logged again
    assert args["enable_sleep_mode"] is False
    assert args["gpu_memory_utilization"] == 0.3
    assert caplog.text.count("keeping the engine resident") == 1
    manager = load_backend("rocm").make_sharding_manager(cfg, FakeEngine(), torch.nn.Linear(2, 2))
    assert manager.free_cache_engine is False


def test_sleep_off_by_choice_keeps_memory_settings(rocm_args):
    _, args = rocm_args("rollout.free_cache_engine=false", sleep=False)
    assert args["enable_sleep_mode"] is False
    assert args["gpu_memory_utilization"] == 0.5  # rollout's own value


def test_unknown_fallback_is_a_user_error():
    with pytest.raises(TandemError, match="backend.settings.sleep_fallback must be one of"):
        plan_sleep(True, False, "no cumem", "swap")


class FakeEngine:
    """A vLLM engine as the sharding manager sees it, recording what happens to it."""

    dtype = torch.float32

    def __init__(self, log: list | None = None):
        self.log = log if log is not None else []

    def update_weights(self, named_tensors):
        self.log.append(("weights", len(list(named_tensors))))

    def generate(self, prompts, params):
        self.log.append("generate")

    def wake_up(self, tags=None):
        self.log.append(("wake", tags))

    def sleep(self):
        self.log.append("sleep")

    def close(self):
        self.log.append("close")


def test_rebuild_fallback_starts_an_engine_per_rollout(rocm_args, monkeypatch):
    import core.rollout.vllm_engine

    events: list = []
    monkeypatch.setattr(core.rollout.vllm_engine, "engine_from_config",
                        lambda cfg, target, backend: events.append("build") or FakeEngine(events))
    cfg, _ = rocm_args("backend.settings.sleep_fallback=rebuild", sleep=False)
    engine = load_backend("rocm").make_rollout_engine(cfg, EngineTarget.from_config(cfg, "unused"))
    assert isinstance(engine, RebuildPerRolloutEngine)
    manager = load_backend("rocm").make_sharding_manager(cfg, engine, torch.nn.Linear(2, 2))
    for _ in range(2):
        with manager:
            engine.generate([[1]], None)
    engine.close()
    # two parameters (weight, bias) pushed into each fresh engine; each closed after its rollout
    assert events == ["build", ("weights", 2), "generate", "close", "build", ("weights", 2), "generate", "close"]
    assert engine.builds == 2
