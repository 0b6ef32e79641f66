"""The HF rollout engine and its sharding manager on the tiny model."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from core.rollout.base import RolloutEngine, SamplingParams
from core.rollout.hf_engine import HFRolloutEngine
from core.sharding.hf import HFShardingManager

PROMPTS = [[97, 98, 61], [99, 61], [100, 101, 102, 61]]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return HFRolloutEngine.from_pretrained(tiny_model_dir, device="cpu", dtype=torch.float32)


def test_engine_satisfies_the_protocol(engine):
    assert isinstance(engine, RolloutEngine)


def test_shapes_and_n_samples_per_prompt_in_prompt_major_order(engine):
    out = engine.generate(PROMPTS, SamplingParams(n=4, max_tokens=6, seed=0))
    assert out.response_ids.shape == out.response_logprobs.shape == out.response_mask.shape
    assert out.response_ids.shape[0] == 12 and out.response_ids.shape[1] <= 6
    assert out.group_ids.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert out.prompt_ids[5] == PROMPTS[1]
    # 4 samples of one prompt are not all identical (sampling, not greedy)
    assert len({tuple(r) for r in out.responses()[:4]}) > 1


def test_stop_token_ends_the_response_and_is_masked_in(engine):
    greedy = engine.generate(PROMPTS[:1], SamplingParams(temperature=0, max_tokens=5))
    first, second = greedy.response_ids[0, :2].tolist()
    out = engine.generate(PROMPTS[:1], SamplingParams(temperature=0, max_tokens=5, stop_token_ids=(second,)))
    # stops right after the first occurrence of the stop token, which is part of the response (like EOS)
    expected = [first, second] if first != second else [first]
    assert out.responses() == [expected]
    assert out.finished.tolist() == [True]
    assert not out.response_mask[0, len(out.responses()[0]):].any()


def test_logprobs_equal_a_fresh_forward_pass(engine):
    out = engine.generate(PROMPTS, SamplingParams(n=2, max_tokens=6, seed=1))
    for row in range(out.response_ids.shape[0]):
        response = out.responses()[row]
        ids = torch.tensor([out.prompt_ids[row] + response])
        with torch.no_grad():
            logprobs = torch.log_softmax(engine.model(ids).logits[0].float(), -1)
        start = len(out.prompt_ids[row])
        expected = logprobs[start - 1 : start - 1 + len(response)].gather(-1, torch.tensor(response)[:, None])[:, 0]
        torch.testing.assert_close(out.response_logprobs[row, : len(response)], expected, atol=1e-4, rtol=1e-4)
        assert (out.response_logprobs[row, len(response):] == 0).all()


def test_seeded_generation_is_reproducible(engine):
    a = engine.generate(PROMPTS, SamplingParams(n=2, max_tokens=6, seed=7))
    b = engine.generate(PROMPTS, SamplingParams(n=2, max_tokens=6, seed=7))
    assert torch.equal(a.response_ids, b.response_ids)


def test_sharding_manager_moves_trainer_weights_into_the_engine(tiny_model_dir):
    engine = HFRolloutEngine.from_pretrained(tiny_model_dir, device="cpu", dtype=torch.float32)
    trainer_model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    params = SamplingParams(temperature=0, max_tokens=6)
    with HFShardingManager(engine, trainer_model):
        before = engine.generate(PROMPTS, params)
    with torch.no_grad():  # a "training step": the trainer's weights move, the engine's don't
        for p in trainer_model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    assert torch.equal(engine.generate(PROMPTS, params).response_logprobs, before.response_logprobs)
    with HFShardingManager(engine, trainer_model):
        after = engine.generate(PROMPTS, params)
    assert not torch.allclose(after.response_logprobs, before.response_logprobs)
    for name, p in trainer_model.named_parameters():
        assert torch.equal(dict(engine.model.named_parameters())[name], p)


def test_logprobs_can_be_skipped(engine):
    out = engine.generate(PROMPTS, SamplingParams(n=2, max_tokens=4, seed=3, logprobs=False))
    assert out.response_logprobs is None
    with_logprobs = engine.generate(PROMPTS, SamplingParams(n=2, max_tokens=4, seed=3))
    assert torch.equal(out.response_ids, with_logprobs.response_ids)  # same samples either way


def test_generation_progress_ticks_once_per_decode_step(engine, monkeypatch):
    import core.rollout.hf_engine as hf_engine
    from core.tracking.progress import DecodeSteps

    seen: list[DecodeSteps] = []

    def recorded(max_new_tokens):
        seen.append(DecodeSteps(max_new_tokens))
        return seen[-1]

    monkeypatch.setattr(hf_engine, "DecodeSteps", recorded)
    out = engine.generate(PROMPTS, SamplingParams(n=2, max_tokens=6, seed=0))
    assert len(seen) == 1 and seen[0].steps == out.response_ids.shape[1]  # the prompt itself is no step


def test_the_hf_engine_names_sequences_longer_than_the_model_s_positions(compose_config, tmp_path):
    import json

    from core.errors import TandemError
    from core.plugins.manager import load_backend
    from core.rollout.base import EngineTarget

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 64}))
    cfg = compose_config("+backend=cpu", "backend.engine=hf", "data.max_prompt_length=60", "rollout.max_tokens=16")
    with pytest.raises(TandemError, match=r"data.max_prompt_length \(60\) \+ rollout.max_tokens \(16\) = 76 tokens is longer"):
        load_backend("cpu").make_rollout_engine(cfg, EngineTarget(str(tmp_path), 60, 0))
