"""ValidationEngine: built once and reused, asleep in between, HF fallback with a logged reason, always closed."""

from __future__ import annotations

import logging

import pytest
import torch
from omegaconf import OmegaConf

from sft_fakes import RecordingEngine, RecordingSharding
from core.errors import TandemError
from core.rollout.base import SamplingParams
from sft.config import ValidationConfig
from sft.engine import EngineAndSync, ValidationEngine, sampling_params

PROMPTS = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
PARAMS = SamplingParams(max_tokens=4)


class Builder:
    """Counts builds; `fail` makes the build raise (an engine that cannot start)."""

    def __init__(self, label: str, fail: Exception | None = None):
        self.label, self.fail, self.built = label, fail, []

    def __call__(self) -> EngineAndSync:
        if self.fail is not None:
            raise self.fail
        engine = RecordingEngine()
        self.built.append(engine)
        return EngineAndSync(engine, RecordingSharding(engine, torch.nn.Linear(2, 2)), self.label)


class FailingEngine(RecordingEngine):
    def generate(self, prompts, params):
        raise RuntimeError("CUDA error: an illegal memory access")


def test_engine_is_built_once_and_reused_with_weights_pushed_before_each_generation():
    build = Builder("vllm")
    with ValidationEngine(build, fallback=None) as engine:
        for _ in range(3):
            engine.generate(PROMPTS, PARAMS)
    (built,) = build.built
    assert len(built.generate_calls) == 3
    # asleep after creation, then wake -> push -> generate -> sleep for each validation, closed at the end
    assert built.events == ["sleep"] + ["wake_up", "update_weights", "generate", "sleep"] * 3 + ["close"]


def test_one_batched_call_returns_one_result_per_prompt_in_order():
    with ValidationEngine(Builder("vllm"), fallback=None) as engine:
        generation = engine.generate(PROMPTS, PARAMS)
    assert generation.output.responses() == [[3, 2, 1], [5, 4], [9, 8, 7]]
    assert generation.engine == "vllm" and generation.sync_s >= 0 and generation.generate_s >= 0


def test_engine_that_cannot_start_falls_back_to_hf_with_the_reason_logged(caplog):
    fallback = Builder("hf (fallback)")
    engine = ValidationEngine(Builder("vllm", fail=ImportError("No module named 'vllm'")), fallback)
    with caplog.at_level(logging.WARNING, logger="tandem"), engine:
        generation = engine.generate(PROMPTS, PARAMS)
    assert generation.engine == "hf (fallback)" and len(fallback.built) == 1
    assert "No module named 'vllm'" in engine.fallback_reason
    assert "generating with HF instead" in caplog.text and "No module named 'vllm'" in caplog.text


def test_engine_failing_mid_generation_is_closed_and_replaced_and_the_run_goes_on(caplog):
    class FailingBuilder(Builder):
        def __call__(self):
            engine = FailingEngine()
            self.built.append(engine)
            return EngineAndSync(engine, RecordingSharding(engine, torch.nn.Linear(2, 2)), "vllm")

    primary, fallback = FailingBuilder("vllm"), Builder("hf (fallback)")
    with caplog.at_level(logging.WARNING, logger="tandem"), ValidationEngine(primary, fallback) as engine:
        first = engine.generate(PROMPTS, PARAMS)
        second = engine.generate(PROMPTS, PARAMS)
    assert first.engine == second.engine == "hf (fallback)"
    assert primary.built[0].events[-1] == "close"  # the failed engine was released at once
    assert len(fallback.built) == 1 and fallback.built[0].events[-1] == "close"
    assert "illegal memory access" in caplog.text


def test_without_fallback_the_failure_propagates_and_the_engine_is_still_closed():
    class Boom(Exception):
        pass

    build = Builder("vllm")
    with pytest.raises(Boom):
        with ValidationEngine(build, fallback=None) as engine:
            engine.generate(PROMPTS, PARAMS)
            raise Boom()  # e.g. the training step after a validation
    assert build.built[0].events[-1] == "close"


def test_configuration_errors_are_not_papered_over_by_the_fallback():
    fallback = Builder("hf")
    engine = ValidationEngine(Builder("vllm", fail=TandemError("rollout.sleep_level must be one of (1, 2)")), fallback)
    with pytest.raises(TandemError, match="sleep_level"):
        engine.generate(PROMPTS, PARAMS)
    assert fallback.built == []


def test_empty_share_still_pushes_weights_but_generates_nothing():
    build = Builder("vllm")
    with ValidationEngine(build, fallback=None) as engine:
        generation = engine.generate([], PARAMS)
    assert generation.output.responses() == []
    assert "update_weights" in build.built[0].events and build.built[0].generate_calls == []


def test_default_sampling_parameters_are_the_documented_ones(tiny_tokenizer):
    params = sampling_params(OmegaConf.structured(ValidationConfig), tiny_tokenizer)
    assert (params.temperature, params.top_p, params.max_tokens, params.stop_token_ids, params.n) == (0.8, 0.9, 128, (), 1)


def test_custom_sampling_parameters_and_stop_strings(tiny_tokenizer):
    cfg = OmegaConf.merge(OmegaConf.structured(ValidationConfig),
                          {"temperature": 0.3, "top_p": 0.5, "top_k": 7, "max_tokens": 9, "stop": ["<|im_end|>"], "seed": 5})
    params = sampling_params(cfg, tiny_tokenizer)
    assert (params.temperature, params.top_p, params.top_k, params.max_tokens, params.seed) == (0.3, 0.5, 7, 9, 5)
    assert params.stop_token_ids == (tiny_tokenizer.convert_tokens_to_ids("<|im_end|>"),)


def test_multi_token_stop_string_is_refused_by_name(tiny_tokenizer):
    cfg = OmegaConf.merge(OmegaConf.structured(ValidationConfig), {"stop": ["END"]})
    with pytest.raises(TandemError, match="validation.stop entry 'END' is 3 tokens"):
        sampling_params(cfg, tiny_tokenizer)
