"""The rollout-engine interface shared by RL rollout, SFT validation and evaluation.

An engine turns token-id prompts into sampled responses. Engines never tokenise: callers pass ids
and get ids back, so RL, SFT and evaluation feed exactly the tokens the trainer scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. Defaults are plain ancestral sampling of up to 64 tokens."""

    n: int = 1  # samples per prompt; results are grouped prompt-major: p0s0, p0s1, ..., p1s0, ...
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = -1  # -1 disables top-k
    max_tokens: int = 64
    stop_token_ids: tuple[int, ...] = ()  # besides the engine's EOS token(s)
    stop: tuple[str, ...] = ()  # stop strings, kept in the output; an engine may ignore them (callers that set
    # them cut the text themselves: the agent loop, at the end of a tool call)
    seed: int | None = None  # per-call seed; None draws from the engine's generator
    logprobs: bool = True  # return the sampled tokens' logprobs; RL recomputes them, so it turns this off


@dataclass(frozen=True)
class EngineSettings:
    """The config a backend builds and runs its engine from: the `rollout` and `backend` groups, nothing else.
    What else an engine needs (model, prompt length, seed) comes as an `EngineTarget`."""

    rollout: Any  # the rollout group (core.config.schema.RolloutConfig's keys)
    backend: Any  # the backend group (BackendConfig's keys; `settings`: the backend's own, schema-checked)

    @classmethod
    def from_config(cls, cfg) -> "EngineSettings":
        return cls(cfg.rollout, cfg.backend)


@dataclass(frozen=True)
class EngineTarget:
    """What an engine is started for, besides its `EngineSettings`: each caller says where these come from.

    RL takes them from `data.max_prompt_length` and `trainer.seed`; SFT from its own keys of the same names.
    """

    model_dir: str  # HF folder the engine loads (or only reads the shape from, with dummy load)
    max_prompt_length: int  # tokens; with `rollout.max_tokens` it sizes `max_model_len` when that is unset
    seed: int  # the engine's sampling seed

    @classmethod
    def from_config(cls, cfg, model_dir: str) -> "EngineTarget":
        return cls(model_dir, int(cfg.data.max_prompt_length), int(cfg.trainer.seed))


@dataclass
class RolloutOutput:
    """Sampled responses, right-padded with `pad_token_id`, one row per sample.

    Rows are prompt-major: row `i * n + j` is sample `j` of prompt `i`.
    """

    prompt_ids: list[list[int]]  # [batch * n] each sample's prompt (repeated n times)
    response_ids: torch.Tensor  # [batch * n, response_len] int64
    response_logprobs: torch.Tensor | None  # [batch * n, response_len] float32, 0 where masked; None if not asked
    response_mask: torch.Tensor  # [batch * n, response_len] bool; True on generated tokens (EOS included)
    group_ids: torch.Tensor  # [batch * n] int64; the prompt index each row answers
    finished: torch.Tensor | None = None  # [batch * n] bool; True if stopped by EOS/stop id
    # multi-turn (core.agent): the response region holds model turns and tool results; response_mask is
    # then the model's tokens only (trained), context_mask every real token (attended to)
    context_mask: torch.Tensor | None = None  # [batch * n, response_len] bool; None: response_mask
    final_turn_start: torch.Tensor | None = None  # [batch * n] int64; column where the model's last turn starts
    # what the engine measured of this call beyond the tokens (the agent loop: agent/* counts); {}: nothing
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def response_lengths(self) -> torch.Tensor:  # [batch * n]
        return self.response_mask.sum(-1)

    @property
    def real_mask(self) -> torch.Tensor:  # [batch * n, response_len] every real token of the response region
        return self.response_mask if self.context_mask is None else self.context_mask

    def responses(self) -> list[list[int]]:
        """The response ids without padding, one list per row (a multi-turn row: the model's tokens)."""
        return [ids[m].tolist() for ids, m in zip(self.response_ids, self.response_mask)]

    def replies(self) -> list[list[int]]:
        """What reward functions read, one list per row: the response, or a multi-turn row's last model turn."""
        if self.final_turn_start is None:
            return self.responses()
        return [ids[start:][m[start:]].tolist()
                for ids, m, start in zip(self.response_ids, self.response_mask, self.final_turn_start.tolist())]


@runtime_checkable
class Sampler(Protocol):
    """What the loops and the evaluation sample from: a rollout engine, the worker group (whose engines hold
    the current weights inside `rollout()`), or the agent loop (core.agent.engine) over either."""

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> RolloutOutput:
        """Sample `params.n` responses for every prompt, in one batched call."""


class RolloutEngine(Sampler, Protocol):
    """What every rollout engine offers (HF on CPU, vLLM on GPU, or a third-party engine): all that
    the sharding managers and SFT validation use of it."""

    dtype: torch.dtype  # of the engine's weights; sharding managers cast the trainer's to it

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load new weights in place, in HF parameter names; tensors may arrive one at a time."""

    def sleep(self) -> None:
        """Release accelerator memory (weights and/or KV cache) until `wake_up`."""

    def wake_up(self, tags: list[str] | None = None) -> None:
        """Re-acquire memory; `tags` (e.g. ["weights"], ["kv_cache"]) wakes only those parts."""

    def close(self) -> None:
        """Free everything; the engine is unusable afterwards. Safe to call twice."""


@runtime_checkable
class CheckableEngine(RolloutEngine, Protocol):
    """An engine that can score prompts, so `rollout.check_weight_sync` can compare it with the trainer."""

    max_model_len: int  # longest sequence it scores

    def prompt_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        """log p(token_t | tokens_<t) for t >= 1 of each sequence."""


def pad_responses(
    responses: list[list[int]], logprobs: list[list[float]] | None, pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Right-pad ragged responses into `(ids, logprobs, mask)` tensors of shape [rows, max_len]
    (logprobs None when not given)."""
    width = max((len(r) for r in responses), default=0)
    ids = torch.full((len(responses), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(responses), width), dtype=torch.bool)
    for row, r in enumerate(responses):
        ids[row, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[row, : len(r)] = True
    if logprobs is None:
        return ids, None, mask
    lps = torch.zeros((len(responses), width), dtype=torch.float32)
    for row, lp in enumerate(logprobs):
        lps[row, : len(lp)] = torch.tensor(lp, dtype=torch.float32)
    return ids, lps, mask
