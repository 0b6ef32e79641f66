"""The agent loop inside the real RL loop on the CPU: tool calls, masked tool output, recomputed log-probs."""

from __future__ import annotations

import json

import pytest
import torch

import core.rl.loop as rl_loop
from core.distributed.packing import packed_response_logprobs
from core.rollout.base import SamplingParams
from core.trainer.actor import response_logprobs
from core.trainer.batch import batch_from_rollout

from test_agent_engine import TOKENIZER, ScriptedEngine, agent, one_call_script, prompt


class ScriptedWorkers(ScriptedEngine):
    """The run's worker group, but its generations are scripted (a random tiny model never calls a tool)."""

    def __init__(self, workers):
        super().__init__(lambda context: "abc<|im_end|>" if "a" in context[-40:] else one_call_script(context))
        self.workers = workers

    def __getattr__(self, name):
        return getattr(self.workers, name)


@pytest.fixture
def scripted_rollouts(monkeypatch):
    """The RL loop's agent engine with scripted generations in place of the model's."""
    real = rl_loop.agent_engine

    def scripted_agent_engine(workers, agent_cfg, tokenizer, pm):
        engine = real(workers, agent_cfg, tokenizer, pm)
        engine.inner = ScriptedWorkers(workers)
        return engine

    monkeypatch.setattr(rl_loop, "agent_engine", scripted_agent_engine)


def test_rl_steps_with_a_calculator_log_the_agent_metrics(compose_config, tmp_path, scripted_rollouts):
    cfg = compose_config("+backend=cpu", "agent.tools=[calculator,python]", "agent.sandbox=auto", "rollout.max_tokens=96",
                         "data.max_prompt_length=32", f"trainer.output_dir={tmp_path}", "trainer.total_steps=2",
                         "trainer.test_freq=2", "trainer.loggers=[jsonl]", "trainer.save_model=false", "trainer.report=false")
    assert rl_loop.train(cfg)["steps"] == 2
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    assert last["agent/tool_call_rate"] > 0 and last["agent/tool_tokens_mean"] > 0 and last["agent/tool_errors"] == 0
    assert "val/agent/turns_mean" in last and "actor/pg_loss" in last


def test_the_trainer_scores_only_the_model_tokens_of_a_multi_turn_row(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    out = agent(one_call_script)[0].generate([prompt(), prompt("Q: 1+4?")], SamplingParams(n=1, max_tokens=200))
    batch = batch_from_rollout(out, TOKENIZER.pad_token_id)
    padded, _ = response_logprobs(model, batch)
    packed, _ = packed_response_logprobs(model, batch)
    mask = batch.response_mask
    torch.testing.assert_close(packed[mask], padded[mask], rtol=1e-5, atol=1e-5)
    assert (packed[~mask] == 0).all()  # tool tokens are not scored (the losses mask the padded forward's)
    assert mask.sum() == 2 * 47 and batch.attention_mask.sum() == 2 * 65 + sum(len(p) for p in out.prompt_ids)


def random_reward(sample) -> float:
    """Scores with spread, so DAPO's dynamic sampling keeps groups of the scripted (deterministic) replies."""
    import random

    return random.random()


def test_dapo_keeps_multi_turn_rows_whole_masks_and_last_turn_included():
    from core.rl.experience import _output_from_pieces, _row_pieces

    out = agent(one_call_script)[0].generate([prompt(), prompt("Q: 1+4?")], SamplingParams(n=1, max_tokens=200))
    short = agent(lambda context: "5<|im_end|>")[0].generate([prompt()], SamplingParams(n=1, max_tokens=200))
    parts = [_row_pieces(out), _row_pieces(short)]
    kept = {name: [row for part in parts for row in part[name]] if isinstance(parts[0][name], list)
            else torch.cat([part[name] for part in parts]) for name in parts[0]}
    rebuilt = _output_from_pieces(kept, torch.tensor([0, 1, 2]), TOKENIZER.pad_token_id)
    width = out.response_ids.shape[1]
    assert rebuilt.response_ids.shape == (3, width)
    for field in ("response_ids", "response_mask", "context_mask"):
        torch.testing.assert_close(getattr(rebuilt, field)[:2], getattr(out, field)[:, :width], msg=field)
    assert rebuilt.replies()[:2] == out.replies() and rebuilt.replies()[2] == short.replies()[0]
    assert rebuilt.context_mask[2].sum() == short.real_mask.sum()  # the one-turn row padded, not stretched


def test_dapo_dynamic_sampling_runs_with_tools(compose_config, tmp_path, scripted_rollouts):
    cfg = compose_config("+backend=cpu", "algorithm=dapo", "agent.tools=[calculator]", "rollout.max_tokens=96",
                         "data.max_prompt_length=32", "reward.reward_fn=test_agent_rl:random_reward",
                         f"trainer.output_dir={tmp_path}", "trainer.total_steps=2", "trainer.loggers=[jsonl]",
                         "trainer.save_model=false", "trainer.report=false")
    assert rl_loop.train(cfg)["steps"] == 2
    last = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["dapo/kept_groups"] > 0 and last["agent/tool_call_rate"] > 0
