"""The glue between rollout and trainer, with numbers laid out by hand: left-padded prompts,
right-padded responses, positions, and the outcome reward on each response's last token."""

from __future__ import annotations

import torch

from core.rollout.base import RolloutOutput
from core.trainer.batch import batch_from_rollout, last_token_rewards

PAD = 0


def two_rows() -> RolloutOutput:
    # row 0: prompt [5, 6, 7], response [8, 9] (stopped); row 1: prompt [3], response [4, 4, 2]
    return RolloutOutput(
        prompt_ids=[[5, 6, 7], [3]],
        response_ids=torch.tensor([[8, 9, PAD], [4, 4, 2]]),
        response_logprobs=None,
        response_mask=torch.tensor([[True, True, False], [True, True, True]]),
        group_ids=torch.tensor([0, 1]),
    )


def test_batch_from_rollout_left_pads_prompts_and_keeps_responses_aligned():
    batch = batch_from_rollout(two_rows(), PAD)
    assert batch.prompt_len == 3
    # every response starts at column prompt_len = 3
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9, PAD], [PAD, PAD, 3, 4, 4, 2]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    # positions count real tokens from 0; padding before the first real token sits at 0
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4, 4], [0, 0, 0, 1, 2, 3]]
    assert batch.responses.tolist() == [[8, 9, PAD], [4, 4, 2]]
    assert batch.group_ids.tolist() == [0, 1]


def test_last_token_rewards_sit_on_each_responses_last_real_token():
    mask = torch.tensor([[True, True, False], [True, True, True], [False, False, False]])
    rewards = last_token_rewards(torch.tensor([0.5, -1.0, 7.0]), mask)
    # row 0 ends at column 1, row 1 at column 2; an empty response gets no reward at all
    assert rewards.tolist() == [[0.0, 0.5, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]]
    assert rewards.dtype == torch.float32
