"""Token balancing and token-budget micro-batches (hand-checked), and the packed forward is exact."""

from __future__ import annotations

import torch

from core.distributed.batching import (balance_groups, balance_rows, data_parallel_rows, micro_batches_by_tokens,
                                      plan_micro_batches, split_to_count)
from core.distributed.packing import packed_response_logprobs
from core.trainer.actor import response_logprobs

from dist_utils import random_batch


def test_balance_rows_lpt():
    # 5 -> A; 4 -> B; 3 -> B (4 < 5); 3 -> A (5 < 7); 1 -> B (7 < 8): A = 5+3, B = 4+3+1
    assert balance_rows([5, 4, 3, 3, 1], 2) == [[0, 3], [1, 2, 4]]
    # equal row counts even when tokens say otherwise: 9 -> A; 1 -> B; 1 -> B; 1 -> A (B is full)
    assert balance_rows([9, 1, 1, 1], 2) == [[0, 3], [1, 2]]


def test_balance_groups_keeps_a_prompts_rows_on_one_rank():
    # groups (2 rows each) of 9, 7, 5, 3 tokens: 9 -> A; 7 -> B; 5 -> B (7 < 9); 3 -> A (B is full) -> 12 | 12
    lengths = [5, 4, 3, 4, 2, 3, 1, 2]
    groups = [0, 0, 1, 1, 2, 2, 3, 3]
    assert balance_groups(lengths, groups, 2) == [[0, 1, 6, 7], [2, 3, 4, 5]]
    # rows of a group need not be adjacent (the batch is shuffled)
    assert balance_groups([5, 4, 3, 4], [0, 1, 0, 1], 2) == [[0, 2], [1, 3]]
    # no even split by groups: 3 groups over 2 ranks, or groups of unequal sizes -> None, rows balanced instead
    assert balance_groups([1] * 6, [0, 0, 1, 1, 2, 2], 2) is None
    assert balance_groups([1] * 4, [0, 0, 0, 1], 2) is None
    assert data_parallel_rows([1] * 6, [0, 0, 1, 1, 2, 2], 2) == balance_rows([1] * 6, 2)


def test_micro_batches_by_token_budget():
    # longest first: 6, 5, 3, 2. packed: 6 (+5 > 8) | 5+3 | 2
    assert micro_batches_by_tokens([6, 2, 5, 3], 8, padded=False) == [[0], [2, 3], [1]]
    # padded cost = rows x longest: [6] | [5] (2x5 > 8) | [3, 2] (2x3 = 6)
    assert micro_batches_by_tokens([6, 2, 5, 3], 8, padded=True) == [[0], [2], [3, 1]]
    # a row over the budget still runs, alone
    assert micro_batches_by_tokens([9, 1], 4, padded=False) == [[0], [1]]


def test_split_to_count_pads_with_empty_groups():
    assert split_to_count([[0, 1, 2, 3], [4]], 3) == [[0, 1], [2, 3], [4]]
    assert split_to_count([[0]], 2) == [[0], []]
    plan = plan_micro_batches(torch.ones(1, 4), max_tokens=None, rows_per_micro=4, padded=False)
    assert len(plan) == 1 and not plan[0].dummy


def test_packed_forward_matches_padded(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    batch = random_batch(rows=6)
    padded, padded_entropy = response_logprobs(model, batch, with_entropy=True)
    packed, packed_entropy = packed_response_logprobs(model, batch, with_entropy=True)
    mask = batch.response_mask
    torch.testing.assert_close(packed[mask], padded[mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed_entropy[mask], padded_entropy[mask], rtol=1e-5, atol=1e-5)
    assert (packed[~mask] == 0).all()
