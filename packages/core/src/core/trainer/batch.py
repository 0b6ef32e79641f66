"""The training batch: prompts and sampled responses laid out for the trainer's forward pass."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import torch

from core.distributed.batching import MicroBatch, plan_micro_batches
from core.distributed.shared_prompts import shared_prompt_tokens
from core.rollout.base import RolloutOutput


@dataclass(kw_only=True)
class TrainingBatch:
    """One row per sampled response: the rollout laid out for the trainer's forward pass (a step's first
    stage; core.rl.stages makes the next ones). Prompts are left-padded, responses right-padded, so every
    response starts at column `prompt_len` and the logits predicting it are a plain slice."""

    input_ids: torch.Tensor  # [rows, prompt_len + response_len]
    attention_mask: torch.Tensor  # [rows, prompt_len + response_len] 1 on real tokens
    position_ids: torch.Tensor  # [rows, prompt_len + response_len] 0 at each row's first real token
    response_mask: torch.Tensor  # [rows, response_len] bool
    group_ids: torch.Tensor  # [rows] prompt index; rows of one prompt form a GRPO group
    prompt_len: int
    rollout_logprobs: Optional[torch.Tensor] = None  # [rows, response_len] the engine's, when it returns them
    # the update's own forward gives the behaviour log-probs (old = new.detach(): one epoch of one mini-batch,
    # core.trainer.actor.behaviour_logprobs_from_update); old_logprobs is then None until the update fills it
    on_policy: bool = False

    @classmethod
    def after(cls, previous: "TrainingBatch", **new):
        """This stage's batch: `previous`'s fields, and the `new` ones this stage adds (or replaces)."""
        return cls(**{**{f.name: getattr(previous, f.name) for f in fields(previous)}, **new})

    @property
    def responses(self) -> torch.Tensor:  # [rows, response_len]
        return self.input_ids[:, self.prompt_len:]

    @property
    def rows(self) -> int:
        return self.input_ids.shape[0]

    def select(self, rows: torch.Tensor):
        """The sub-batch of `rows`, of the same stage (every per-row tensor indexed, the rest shared)."""
        picked = {}
        for f in fields(self):
            value = getattr(self, f.name)
            picked[f.name] = value[rows] if isinstance(value, torch.Tensor) else value
        return type(self)(**picked)

    def to(self, device):
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(device)
        return type(self)(**moved)


@dataclass(kw_only=True)
class ScoredBatch(TrainingBatch):
    """The second stage: each response scored."""

    scores: torch.Tensor  # [rows] reward of each response
    token_rewards: torch.Tensor  # [rows, response_len] the score on each response's last trained token


@dataclass(kw_only=True)
class LogprobBatch(ScoredBatch):
    """The third stage: log-probabilities under the trainer's own numerics (and the critic's values)."""

    old_logprobs: Optional[torch.Tensor]  # [rows, response_len] behaviour policy; None: on-policy, the update's
    ref_logprobs: Optional[torch.Tensor] = None  # [rows, response_len] reference policy (a KL term)
    values: Optional[torch.Tensor] = None  # [rows, response_len] critic (PPO)


@dataclass(kw_only=True)
class AdvantageBatch(LogprobBatch):
    """The last stage, what an update trains on."""

    advantages: torch.Tensor  # [rows, response_len]
    returns: torch.Tensor  # [rows, response_len] the critic's targets (critic-free estimators: the advantages)


def micro_batch_plan(batch: "TrainingBatch", trainer_cfg, padded: bool | None = None,
                     max_tokens: int | None = None, shared_prompts: bool = False) -> list[MicroBatch]:
    """This rank's micro-batches: `max_tokens` (default `trainer.max_tokens_per_gpu`) tokens or
    `micro_batch_size` rows each, as many as on the busiest data-parallel rank (see core/distributed/batching.py);
    `shared_prompts`: each prompt's rows kept together, for the shared-prompt forward."""
    padded = not trainer_cfg.remove_padding if padded is None else padded
    max_tokens = trainer_cfg.max_tokens_per_gpu if max_tokens is None else max_tokens
    prompt_groups = None
    if shared_prompts:
        prompt_groups = (batch.attention_mask[:, :batch.prompt_len].sum(-1).tolist(), batch.group_ids.tolist())
    return plan_micro_batches(batch.attention_mask, max_tokens, trainer_cfg.micro_batch_size, padded, prompt_groups)


def budgeted_plan(batch: "TrainingBatch", trainer_cfg, budget, padded: bool,
                  shared_prompts: bool = False) -> list[MicroBatch]:
    """`micro_batch_plan` under `budget` (a `MemoryTokenBudget`, told what each micro-batch costs: its tokens
    packed, rows x its longest row padded, each prompt once shared); the config's plan when `budget` is None."""
    if budget is None:
        return micro_batch_plan(batch, trainer_cfg, padded, shared_prompts=shared_prompts)
    plan = micro_batch_plan(batch, trainer_cfg, padded, max_tokens=budget.tokens, shared_prompts=shared_prompts)
    lengths, mask = batch.attention_mask.sum(-1), batch.attention_mask
    if shared_prompts:
        costs = [shared_prompt_tokens(mask[m.rows], batch.prompt_len, batch.group_ids[m.rows]) for m in plan]
    else:
        costs = [int(len(m.rows) * lengths[m.rows].max() if padded else lengths[m.rows].sum()) for m in plan]
    budget.planned(costs)
    return plan


def forward_tokens(batch: "TrainingBatch", shared_prompts: bool) -> int:
    """Tokens a forward over `batch` computes: its real tokens, each group's prompt once with shared prompts."""
    if shared_prompts:
        return shared_prompt_tokens(batch.attention_mask, batch.prompt_len, batch.group_ids)
    return int(batch.attention_mask.sum())


def scatter_rows(plan: list[MicroBatch], parts: list[torch.Tensor], rows: int) -> torch.Tensor:
    """Reassemble per-micro-batch results [micro_rows, ...] into batch order [rows, ...]."""
    real = [(micro.rows, part) for micro, part in zip(plan, parts) if not micro.dummy]
    return in_batch_order([index for index, _ in real], [part for _, part in real], rows)


def in_batch_order(indices: list[torch.Tensor], parts: list[torch.Tensor], rows: int) -> torch.Tensor:
    """Place parts[i] [len(indices[i]), ...] at rows indices[i] of a [rows, ...] tensor."""
    out = torch.empty((rows, *parts[0].shape[1:]), dtype=parts[0].dtype)
    for index, part in zip(indices, parts):
        out[index] = part
    return out


def minibatches(batch: "TrainingBatch", epochs: int, count: int):
    """`epochs` shuffled passes over `batch`, each split into `count` optimizer steps: (rows, sub-batch).

    `tensor_split` always yields `count` parts, so every data-parallel rank (holding the same
    number of rows) takes the same number of optimizer steps.
    """
    for _ in range(epochs):
        for rows in torch.tensor_split(torch.randperm(batch.rows), count):
            yield rows, batch.select(rows)


def batch_from_rollout(out: RolloutOutput, pad_token_id: int) -> TrainingBatch:
    prompt_len = max(len(p) for p in out.prompt_ids)
    rows = len(out.prompt_ids)
    prompts = torch.full((rows, prompt_len), pad_token_id, dtype=torch.long)
    prompt_mask = torch.zeros((rows, prompt_len), dtype=torch.long)
    for row, prompt in enumerate(out.prompt_ids):
        prompts[row, prompt_len - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        prompt_mask[row, prompt_len - len(prompt):] = 1
    attention_mask = torch.cat([prompt_mask, out.real_mask.long()], dim=1)  # multi-turn: tool results attended to
    return TrainingBatch(
        input_ids=torch.cat([prompts, out.response_ids], dim=1),
        attention_mask=attention_mask,
        position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0),
        response_mask=out.response_mask,
        group_ids=out.group_ids,
        prompt_len=prompt_len,
        rollout_logprobs=out.response_logprobs,
    )


def last_token_rewards(scores: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Outcome rewards placed on each response's last trained token: [rows] -> [rows, response_len]
    (a multi-turn row's mask has holes where tool results are: the last True, not the count)."""
    token_rewards = torch.zeros(response_mask.shape, dtype=torch.float32)
    last = response_mask.shape[-1] - 1 - response_mask.flip(-1).int().argmax(-1)
    has_tokens = response_mask.any(-1)
    token_rewards[has_tokens, last[has_tokens]] = scores[has_tokens].float()
    return token_rewards
