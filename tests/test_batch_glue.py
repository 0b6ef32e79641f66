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


def test_ranks_outputs_join_with_every_part_kept():
    """Rank 0 answered prompts 0-1 (width 3), rank 1 prompt 2 with a multi-turn row (width 4: 1 model token,
    2 tool tokens, 1 model token): one output of width 4, group ids shifted, masks padded with False."""
    from core.workers.group import concat_outputs

    first = two_rows()
    first.finished = torch.tensor([True, False])
    second = RolloutOutput(prompt_ids=[[1]], response_ids=torch.tensor([[4, 7, 7, 2]]), response_logprobs=None,
                           response_mask=torch.tensor([[True, False, False, True]]), group_ids=torch.tensor([0]),
                           finished=torch.tensor([True]), context_mask=torch.tensor([[True, True, True, True]]),
                           final_turn_start=torch.tensor([3]))
    first.context_mask, first.final_turn_start = first.response_mask.clone(), torch.tensor([0, 0])
    joined = concat_outputs([(first, 0), (second, 2)], PAD)
    assert joined.response_ids.tolist() == [[8, 9, PAD, PAD], [4, 4, 2, PAD], [4, 7, 7, 2]]
    assert joined.group_ids.tolist() == [0, 1, 2] and joined.finished.tolist() == [True, False, True]
    assert joined.context_mask.tolist() == [[True, True, False, False], [True, True, True, False], [True] * 4]
    assert joined.final_turn_start.tolist() == [0, 0, 3] and joined.response_logprobs is None
