"""The hybrid vLLM sharding manager's choreography, against a recording fake engine (no vLLM needed)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config

from core.sharding.vllm import VllmShardingManager, check_weight_sync


def tiny_lm(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=50, max_position_embeddings=64)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


class RecordingEngine:
    """A vLLM engine as the manager sees it; `scorer` plays the model the engine holds."""

    dtype = torch.bfloat16
    max_model_len = 32

    def __init__(self, scorer: torch.nn.Module | None = None):
        self.events: list = []
        self.scorer = scorer

    def wake_up(self, tags=None):
        self.events.append(("wake", tags))

    def update_weights(self, named_tensors):
        assert iter(named_tensors) is named_tensors  # a stream, not a materialised copy of the model
        for name, tensor in named_tensors:
            self.events.append(("param", name, tensor.dtype))

    def prompt_logprobs(self, sequences):
        self.events.append("prompt_logprobs")
        ids = torch.tensor(sequences)
        with torch.no_grad():
            logprobs = torch.log_softmax(self.scorer(input_ids=ids).logits[:, :-1].float(), dim=-1)
        return logprobs.gather(-1, ids[:, 1:, None]).squeeze(-1).tolist()

    def generate(self, prompts, params):
        self.events.append("generate")

    def sleep(self):
        self.events.append("sleep")


def test_wake_weights_then_stream_then_wake_kv_cache_then_sleep():
    trainer = tiny_lm(0)
    engine = RecordingEngine()
    with VllmShardingManager(engine, trainer, free_cache_engine=True):
        engine.generate([[1, 2]], None)
    names = [name for name, _ in trainer.named_parameters()]
    assert engine.events == [
        ("wake", ["weights"]),  # the KV cache stays released while weights arrive
        *[("param", name, torch.bfloat16) for name in names],  # one at a time, cast to the engine's dtype
        ("wake", ["kv_cache"]),
        "generate",
        "sleep",
    ]


def test_resident_engine_is_never_put_to_sleep():
    engine = RecordingEngine()
    for _ in range(2):
        with VllmShardingManager(engine, tiny_lm(0), free_cache_engine=False):
            engine.generate([[1]], None)
    assert not any(event == "sleep" or event[0] == "wake" for event in engine.events)
    assert engine.events.count("generate") == 2


def test_sleeps_even_when_the_rollout_fails():
    engine = RecordingEngine()
    with pytest.raises(ValueError):
        with VllmShardingManager(engine, tiny_lm(0), free_cache_engine=True):
            raise ValueError("rollout failed")
    assert engine.events[-1] == "sleep"


def test_sync_check_passes_on_the_same_model_after_the_kv_cache_wakes():
    engine = RecordingEngine(scorer=tiny_lm(0).to(torch.bfloat16).float())  # the engine's bf16 copy
    with VllmShardingManager(engine, tiny_lm(0), free_cache_engine=True, check_weight_sync=True):
        pass
    assert engine.events.index(("wake", ["kv_cache"])) < engine.events.index("prompt_logprobs")


def test_sync_check_raises_when_the_engine_holds_another_model():
    engine = RecordingEngine(scorer=tiny_lm(1))
    with pytest.raises(RuntimeError, match="weight sync check failed"):
        with VllmShardingManager(engine, tiny_lm(0), free_cache_engine=True, check_weight_sync=True):
            pass
    mean_diff, max_diff = check_weight_sync(RecordingEngine(scorer=tiny_lm(0)), tiny_lm(0))
    assert mean_diff == max_diff == 0.0  # identical weights, identical logprobs


def test_the_engine_wakes_only_what_sleeps():
    from types import SimpleNamespace

    from core.rollout.vllm_engine import VllmRolloutEngine

    calls = []
    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=1)
    llm = SimpleNamespace(
        llm_engine=SimpleNamespace(model_config=SimpleNamespace(dtype=torch.bfloat16, max_model_len=32)),
        get_tokenizer=lambda: tokenizer, wake_up=lambda tags=None: calls.append(("wake", tags)),
        sleep=lambda level: calls.append(("sleep", level)), reset_prefix_cache=lambda: True,
    )
    engine = VllmRolloutEngine(llm, multiprocess=False)
    engine.wake_up(tags=["weights"])  # started awake: nothing to wake, no "Executor is not sleeping"
    engine.wake_up(tags=["kv_cache"])
    engine.sleep()
    engine.wake_up(tags=["weights"])
    engine.wake_up(tags=["kv_cache"])
    engine.sleep()
    engine.wake_up()
    assert calls == [("sleep", 2), ("wake", ["weights"]), ("wake", ["kv_cache"]), ("sleep", 2), ("wake", None)]
