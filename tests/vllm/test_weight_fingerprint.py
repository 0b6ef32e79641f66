"""The always-on weight check (core.rollout.fingerprint): after every sync the engine's own memory is read back
for a few tensors and compared with what the trainer sent. Against a model that loads like vLLM's (fused
q/k/v, a padded embedding: tests/vllm/test_copy_plan.py) behind the real engine class, with a planted bug:
a sync that never reaches the model, as an engine that kept old weights after sleep/wake would serve."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from core.errors import RunDied
from core.rollout import fingerprint as fp
from core.rollout.vllm_engine import VllmRolloutEngine
from core.rollout.vllm_worker import WeightSyncExtension
from test_copy_plan import VllmLikeModel, hf_weights


class InProcessLLM:
    """What VllmRolloutEngine needs of `vllm.LLM`, over one worker that holds a VllmLikeModel."""

    def __init__(self):
        self.worker = WeightSyncExtension()
        self.worker.model_runner = SimpleNamespace(model=VllmLikeModel())
        self.llm_engine = SimpleNamespace(model_config=SimpleNamespace(dtype=torch.float32, max_model_len=64))
        self.lost = False  # the planted bug: loads that never reach the model

    def collective_rpc(self, method, args=()):
        if self.lost and method in ("tandem_load_tensors", "tandem_load_bucket"):
            return [0]
        return [getattr(self.worker, method)(*args)]

    def get_tokenizer(self):
        return SimpleNamespace(pad_token_id=0, eos_token_id=0)

    def reset_prefix_cache(self):
        return True


@pytest.fixture
def engine(monkeypatch):
    monkeypatch.setattr(fp, "EVERY", 2)  # fingerprint q, v, up, norm, assigned of the 9 tensors
    return VllmRolloutEngine(InProcessLLM(), multiprocess=False)


def test_every_sync_is_checked_against_the_engines_memory(engine):
    for seed in range(3):  # the first sync learns the copy plan; the next ones are plain copies
        engine.update_weights(hf_weights(seed))
        engine.verify_weights()
    # the fingerprinted tensors the plan holds were compared (assigned: a loader the plan cannot replay)
    held = engine.llm.worker.tandem_fingerprints(list(engine._fingerprints.taken))
    assert set(engine._fingerprints.taken) == {"q", "v", "up", "norm", "assigned"} and set(held) == {"q", "v", "up", "norm"}


def test_a_sync_that_never_reached_the_model_stops_the_run(engine):
    engine.update_weights(hf_weights(0))
    engine.verify_weights()
    engine.llm.lost = True
    engine.update_weights(hf_weights(1))  # the engine still holds seed 0's weights
    with pytest.raises(RunDied, match="does not hold the weights just sent .*stale or lost weight sync"):
        engine.verify_weights()


def test_one_bf16_step_on_one_sampled_element_is_caught():
    weights = torch.randn(64, 8).to(torch.bfloat16)
    stale = weights.clone()
    stale[0, 3] = weights[0, 3].float() * (1 + 2 ** -7)  # one bf16 step (7 mantissa bits) on a sampled row
    assert fp.same(fp.fingerprint(weights), fp.fingerprint(weights.clone()))
    assert not fp.same(fp.fingerprint(stale), fp.fingerprint(weights))


def test_the_sharding_manager_checks_every_sync_unless_told_not_to(engine):
    from core.sharding.vllm import VllmShardingManager

    class Trainer(torch.nn.Module):  # HF-named parameters, as the trainer streams them
        def __init__(self, seed):
            super().__init__()
            for name, tensor in hf_weights(seed):
                self.register_parameter(name, torch.nn.Parameter(tensor))

    with VllmShardingManager(engine, Trainer(0), free_cache_engine=False):
        pass
    engine.llm.lost = True
    with pytest.raises(RunDied, match="stale or lost weight sync"):
        with VllmShardingManager(engine, Trainer(1), free_cache_engine=False):
            pass
    with VllmShardingManager(engine, Trainer(2), free_cache_engine=False, verify_weights=False):
        pass  # rollout.verify_weights=false: not checked
