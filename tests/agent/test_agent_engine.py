"""The agent loop end to end on a scripted engine: turns, cuts at the call, tool results appended and
masked out of training, budgets, failing tools; masks checked by hand (the byte tokenizer: one token a
character, special tokens one each)."""

from __future__ import annotations

import time

import pytest
import torch

from core.agent.engine import AgentEngine
from core.agent.formats import TaggedFormat
from core.agent.tools import Calculator
from core.models.tokenizer import build_byte_tokenizer
from core.rollout.base import RolloutOutput, SamplingParams, pad_responses
from core.trainer.batch import batch_from_rollout, last_token_rewards

TOKENIZER = build_byte_tokenizer()
EOS = TOKENIZER.convert_tokens_to_ids("<|im_end|>")


class ScriptedEngine:
    """Answers each context with `script(context_text)`; a reply ending in <|im_end|> has finished."""

    dtype = torch.float32

    def __init__(self, script):
        self.script, self.calls = script, []

    def generate(self, prompts, params):
        self.calls.append((len(prompts), params))
        replies = [TOKENIZER(self.script(TOKENIZER.decode(p)), add_special_tokens=False)["input_ids"][: params.max_tokens]
                   for p in prompts]
        ids, logprobs, mask = pad_responses(replies, [[-0.5] * len(r) for r in replies], TOKENIZER.pad_token_id)
        finished = torch.tensor([bool(r) and r[-1] == EOS for r in replies])
        return RolloutOutput([list(p) for p in prompts], ids, logprobs, mask, torch.arange(len(prompts)), finished)


class Broken:
    name, description, parameter = "broken", "raises", "x"

    def run(self, argument):
        raise RuntimeError("tool fell over")


class Hangs:
    name, description, parameter = "hangs", "sleeps", "x"

    def run(self, argument):
        time.sleep(5)
        return "late"


def agent(script, max_turns=4, tools=None, timeout_s=2.0):
    tools = tools or {"calculator": Calculator()}
    engine = ScriptedEngine(script)
    return AgentEngine(engine, tools, TaggedFormat(tools), TOKENIZER, max_turns, timeout_s, 4), engine


def prompt(text="Q: 2+3?"):
    return TOKENIZER(text, add_special_tokens=False)["input_ids"]


def one_call_script(context: str) -> str:
    if "<result>" not in context:
        return "Let me see <calculator>2+3</calculator> ignored junk after the call"
    return "It is 5<|im_end|>"


def test_two_turns_with_the_result_masked_out():
    runner, engine = agent(one_call_script)
    out = runner.generate([prompt()], SamplingParams(n=2, max_tokens=200, logprobs=True))
    model_1, result, model_2 = "Let me see <calculator>2+3</calculator>", "<result>5</result>", "It is 5"
    # model turn 1: 39 chars; tool result: 18 chars; model turn 2: 7 chars + <|im_end|>
    assert (len(model_1), len(result), len(model_2) + 1) == (39, 18, 8)
    expected_trained = [True] * 39 + [False] * 18 + [True] * 8
    for row in range(2):  # n=2: two conversations of the one prompt
        assert out.response_mask[row].tolist() == expected_trained
        assert out.context_mask[row].tolist() == [True] * 65
        assert TOKENIZER.decode(out.response_ids[row]) == model_1 + result + model_2 + "<|im_end|>"
        assert out.response_logprobs[row].tolist() == [-0.5] * 39 + [0.0] * 18 + [-0.5] * 8
    assert out.group_ids.tolist() == [0, 0] and out.finished.tolist() == [True, True]
    assert out.final_turn_start.tolist() == [57, 57]
    assert TOKENIZER.batch_decode(out.replies(), skip_special_tokens=True) == ["It is 5", "It is 5"]
    assert [(rows, params.n, params.stop, params.max_tokens) for rows, params in engine.calls] == [
        (2, 1, ("</calculator>",), 200), (2, 1, ("</calculator>",), 200 - 57)]  # the budget left after turn 1
    assert out.metrics == {
        "agent/turns_mean": 2.0, "agent/tool_calls_mean": 1.0, "agent/tool_call_rate": 1.0, "agent/tool_errors": 0.0,
        "agent/tool_timeouts": 0.0, "agent/model_tokens_mean": 47.0, "agent/tool_tokens_mean": 18.0}


def test_the_trainer_attends_to_tool_results_and_rewards_the_last_model_token():
    out = agent(one_call_script)[0].generate([prompt()], SamplingParams(n=1, max_tokens=200))
    batch = batch_from_rollout(out, TOKENIZER.pad_token_id)
    assert batch.attention_mask[0, batch.prompt_len:].tolist() == [1] * 65  # tool tokens are context
    assert batch.response_mask[0].sum() == 47  # but only the model's 39 + 8 are trained
    rewards = last_token_rewards(torch.tensor([1.0]), batch.response_mask)
    assert rewards[0].nonzero().flatten().tolist() == [64]  # the <|im_end|> of the last model turn


def test_finished_conversations_leave_the_batch():
    # the first prompt is answered directly, the second needs the calculator
    script = lambda c: "4<|im_end|>" if "2+2" in c else one_call_script(c)  # noqa: E731
    runner, engine = agent(script)
    out = runner.generate([prompt("Q: 2+2?"), prompt()], SamplingParams(n=1, max_tokens=200))
    assert [rows for rows, _ in engine.calls] == [2, 1]
    assert out.response_mask[0].sum() == 2 and out.response_mask[0].all() == out.context_mask[0].all()
    assert out.metrics["agent/tool_call_rate"] == 0.5 and out.metrics["agent/turns_mean"] == 1.5


def test_max_turns_ends_a_model_that_keeps_calling():
    runner, engine = agent(lambda c: "<calculator>1+1</calculator>", max_turns=3)
    out = runner.generate([prompt()], SamplingParams(n=1, max_tokens=500))
    # three model turns; the third's call is not run: 28 + 18 ("<result>2</result>") + 28 + 18 + 28 tokens
    assert len(engine.calls) == 3 and out.metrics["agent/tool_calls_mean"] == 2.0
    assert out.response_mask[0].tolist() == [True] * 28 + [False] * 18 + [True] * 28 + [False] * 18 + [True] * 28
    assert out.finished.tolist() == [False]


def test_the_token_budget_covers_model_and_tool_tokens():
    runner, _ = agent(one_call_script)
    out = runner.generate([prompt()], SamplingParams(n=1, max_tokens=45))
    # 39 model tokens, then only 6 of the 18 result tokens fit: the conversation ends there, unfinished
    assert out.context_mask[0].sum() == 45 and out.response_mask[0].sum() == 39
    assert out.finished.tolist() == [False]


@pytest.mark.parametrize("tools, call, message", [
    ({"broken": Broken()}, "<broken>x</broken>", "<result>error: RuntimeError: tool fell over</result>"),
    ({"hangs": Hangs()}, "<hangs>x</hangs>", "<result>error: hangs timed out after 0.2 s</result>"),
    ({"calculator": Calculator()}, "<calculator>import os</calculator>", "<result>error: SyntaxError"),
])
def test_a_failing_tool_answers_with_an_error_and_the_run_goes_on(tools, call, message):
    runner, _ = agent(lambda c: "done<|im_end|>" if "<result>" in c else call, tools=tools, timeout_s=0.2)
    started = time.perf_counter()
    out = runner.generate([prompt()], SamplingParams(n=1, max_tokens=300))
    assert time.perf_counter() - started < 2  # a hanging tool costs its timeout, not its sleep
    assert message in TOKENIZER.decode(out.response_ids[0])
    assert out.metrics["agent/tool_errors"] == 1.0 and out.finished.tolist() == [True]
    assert out.metrics["agent/tool_timeouts"] == float("hangs" in tools)
