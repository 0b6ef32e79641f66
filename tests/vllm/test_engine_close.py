"""Closing the vLLM engine: a sleeping engine is woken before it is deleted (no vLLM needed: a fake LLM)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from core.rollout.vllm_engine import VllmRolloutEngine


class FakeLLM:
    """What VllmRolloutEngine touches of vllm.LLM, recording sleep/wake/shutdown in order."""

    def __init__(self, wake_fails: bool = False):
        self.calls: list[str] = []
        self.wake_fails = wake_fails
        config = SimpleNamespace(dtype=torch.bfloat16, max_model_len=64)
        core = SimpleNamespace(shutdown=lambda: self.calls.append("shutdown"))
        self.llm_engine = SimpleNamespace(model_config=config, engine_core=core)

    def get_tokenizer(self):
        return SimpleNamespace(pad_token_id=0, eos_token_id=1)

    def sleep(self, level):
        self.calls.append(f"sleep({level})")

    def wake_up(self, tags=None):
        if self.wake_fails:
            raise RuntimeError("out of memory")
        self.calls.append("wake_up")


def test_a_sleeping_engine_is_woken_before_it_is_shut_down(monkeypatch):
    emptied = []
    monkeypatch.setattr("core.rollout.vllm_engine.empty_cache", lambda device: emptied.append(device))
    llm = FakeLLM()
    engine = VllmRolloutEngine(llm, multiprocess=False)
    engine.sleep()
    engine.close()
    # emptied before the wake (the trainer's cached blocks, as before every wake) and after the deletion
    assert llm.calls == ["sleep(2)", "wake_up", "shutdown"] and len(emptied) == 2
    engine.close()  # twice is harmless
    assert llm.calls == ["sleep(2)", "wake_up", "shutdown"]


def test_an_awake_engine_closes_without_a_wake_and_a_failed_wake_skips_emptying_the_cache(monkeypatch):
    emptied = []
    monkeypatch.setattr("core.rollout.vllm_engine.empty_cache", lambda device: emptied.append(device))
    awake = FakeLLM()
    VllmRolloutEngine(awake, multiprocess=False).close()
    assert awake.calls == ["shutdown"] and len(emptied) == 1
    stuck = FakeLLM(wake_fails=True)
    engine = VllmRolloutEngine(stuck, multiprocess=False)
    engine.sleep()
    engine.close()  # logged, deleted asleep, the cache left alone after (emptying it over released handles hung)
    assert stuck.calls == ["sleep(2)", "shutdown"] and len(emptied) == 2  # the awake one's, then before the wake
