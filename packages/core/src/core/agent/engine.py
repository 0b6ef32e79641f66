"""AgentEngine: a rollout engine that runs multi-turn conversations with tools on another engine.

Every conversation (one per prompt x sample) goes turn by turn: one batched `generate` for all the
unfinished ones, each turn cut after its first complete tool call, the calls run concurrently (with
timeouts), their results appended, repeated until a turn has no call, `agent.max_turns` turns, or the
conversation's token budget (`rollout.max_tokens`, model and tool tokens together) is spent. Finished
conversations leave the batch.

What it returns is an ordinary RolloutOutput whose response region holds the whole exchange:
`context_mask` marks every token (what the trainer attends to), `response_mask` only the model's own
(what carries advantages and the loss: tool output is never trained on), and `final_turn_start` where
the model's last turn begins (what reward functions read: the answer). The trainer recomputes the
log-probs over the whole multi-turn sequence, as for any rollout.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable

import torch

from core.agent.formats import ToolFormat
from core.agent.tools import Tool, ToolCall, run_tool_calls
from core.rollout.base import RolloutEngine, RolloutOutput, SamplingParams


@dataclass
class Conversation:
    prompt: list[int]
    group: int  # the prompt's index in the call
    ids: list[int] = field(default_factory=list)  # everything after the prompt: model turns and tool results
    trained: list[bool] = field(default_factory=list)  # [len(ids)] True on the model's own tokens
    logprobs: list[float] = field(default_factory=list)  # [len(ids)] the engine's (0 on tool tokens)
    final_start: int = 0  # where the model's last turn starts in ids
    turns: int = 0
    calls: int = 0
    errors: int = 0
    timeouts: int = 0
    done: bool = False
    finished: bool = False  # the last turn ended by itself (EOS / stop token), not by a limit

    def append(self, ids: list[int], trained: bool, logprobs: list[float] | None = None) -> None:
        self.ids += ids
        self.trained += [trained] * len(ids)
        self.logprobs += logprobs if logprobs is not None else [0.0] * len(ids)


class AgentEngine:
    """Multi-turn conversations with tools, sampled turn by turn from `inner` (any RolloutEngine, the worker
    group included): what the loops sample from, as `generate` (the Sampler protocol). Weights, sleep and
    closing stay with `inner` and its owner. Each output carries its agent/* counts in `metrics`."""

    def __init__(self, inner: RolloutEngine, tools: dict[str, Tool], fmt: ToolFormat, tokenizer,
                 max_turns: int, tool_timeout_s: float, max_parallel_tools: int):
        self.inner, self.tools, self.format, self.tokenizer = inner, tools, fmt, tokenizer
        self.max_turns, self.tool_timeout_s, self.max_parallel_tools = max_turns, tool_timeout_s, max_parallel_tools

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> RolloutOutput:
        conversations = [Conversation(prompt, group) for group, prompt in enumerate(prompts) for _ in range(params.n)]
        budget = params.max_tokens
        turn_params = replace(params, n=1, stop=tuple(self.format.stop_strings()))
        while active := [c for c in conversations if not c.done]:
            room = [budget - len(c.ids) for c in active]
            out = self.inner.generate([c.prompt + c.ids for c in active], replace(turn_params, max_tokens=max(room)))
            pending: list[tuple[Conversation, ToolCall]] = []
            for row, (conversation, left) in enumerate(zip(active, room)):
                call = self._take_turn(conversation, out, row, left)
                if call is not None:
                    pending.append((conversation, call))
            results = run_tool_calls([call for _, call in pending], self.tools, self.tool_timeout_s,
                                     self.max_parallel_tools)
            for (conversation, _), result in zip(pending, results):
                conversation.calls += 1
                conversation.errors += result.error
                conversation.timeouts += result.timed_out
                text_ids = self.tokenizer(self.format.result_text(result.text), add_special_tokens=False)["input_ids"]
                left = budget - len(conversation.ids)
                conversation.append(text_ids[:left], trained=False)
                conversation.done = len(text_ids) >= left  # no room left for the model to read and answer
        output = to_rollout_output(conversations, self.tokenizer.pad_token_id, params.logprobs)
        output.metrics = agent_metrics(conversations)
        return output

    def _take_turn(self, conversation: Conversation, out: RolloutOutput, row: int, left: int) -> ToolCall | None:
        """Append the model's turn (up to its first call); the call, if the conversation goes on."""
        ids = out.response_ids[row][out.response_mask[row]].tolist()
        logprobs = out.response_logprobs[row][out.response_mask[row]].tolist() if out.response_logprobs is not None else None
        stopped = bool(out.finished[row]) if out.finished is not None else False
        if len(ids) > left:
            ids, stopped = ids[:left], False
        conversation.turns += 1
        conversation.final_start = len(conversation.ids)
        found = self._first_call(ids)
        if found is not None:
            end, call = found
            ids = ids[:end]
        conversation.append(ids, trained=True, logprobs=None if logprobs is None else logprobs[: len(ids)])
        goes_on = found is not None and conversation.turns < self.max_turns and left > len(ids)  # room to read and answer
        if not goes_on:
            conversation.done = True
            conversation.finished = stopped and found is None
            return None
        return call

    def _first_call(self, ids: list[int]) -> tuple[int, ToolCall] | None:
        """(tokens up to and including the one that completes the first call, the call), or None."""
        found = self.format.find_call(self.tokenizer.decode(ids, skip_special_tokens=False))
        if found is None:
            return None
        call, end_char = found
        low, high = 1, len(ids)  # the shortest prefix whose text reaches the call's end
        while low < high:
            mid = (low + high) // 2
            if len(self.tokenizer.decode(ids[:mid], skip_special_tokens=False)) >= end_char:
                high = mid
            else:
                low = mid + 1
        return low, call


def to_rollout_output(conversations: list[Conversation], pad_token_id: int, with_logprobs: bool) -> RolloutOutput:
    width = max((len(c.ids) for c in conversations), default=0)
    rows = len(conversations)
    ids = torch.full((rows, width), pad_token_id, dtype=torch.long)
    context = torch.zeros((rows, width), dtype=torch.bool)
    trained = torch.zeros((rows, width), dtype=torch.bool)
    logprobs = torch.zeros((rows, width), dtype=torch.float32)
    for row, c in enumerate(conversations):
        length = len(c.ids)
        ids[row, :length] = torch.tensor(c.ids, dtype=torch.long)
        context[row, :length] = True
        trained[row, :length] = torch.tensor(c.trained, dtype=torch.bool)
        logprobs[row, :length] = torch.tensor(c.logprobs, dtype=torch.float32)
    return RolloutOutput(
        prompt_ids=[c.prompt for c in conversations], response_ids=ids,
        response_logprobs=logprobs if with_logprobs else None, response_mask=trained,
        group_ids=torch.tensor([c.group for c in conversations], dtype=torch.long),
        finished=torch.tensor([c.finished for c in conversations], dtype=torch.bool),
        context_mask=context, final_turn_start=torch.tensor([c.final_start for c in conversations], dtype=torch.long),
    )


def agent_metrics(conversations: Iterable[Conversation]) -> dict[str, float]:
    conversations = list(conversations)
    count = max(len(conversations), 1)
    model_tokens = sum(sum(c.trained) for c in conversations)
    all_tokens = sum(len(c.ids) for c in conversations)
    return {
        "agent/turns_mean": sum(c.turns for c in conversations) / count,
        "agent/tool_calls_mean": sum(c.calls for c in conversations) / count,
        "agent/tool_call_rate": sum(c.calls > 0 for c in conversations) / count,  # conversations with a call
        "agent/tool_errors": float(sum(c.errors for c in conversations)),
        "agent/tool_timeouts": float(sum(c.timeouts for c in conversations)),
        "agent/model_tokens_mean": model_tokens / count,
        "agent/tool_tokens_mean": (all_tokens - model_tokens) / count,
    }
