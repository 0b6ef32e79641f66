"""Helpers of the distributed tests: random batches of uneven lengths (GRPO-shaped groups too), gloo groups."""

from __future__ import annotations

import os
import socket

import torch

from core.rollout.base import RolloutOutput
from core.trainer.batch import AdvantageBatch, batch_from_rollout


def random_batch(rows: int = 8, seed: int = 0, vocab: int = 300, max_prompt: int = 6, max_response: int = 5):
    """An AdvantageBatch with prompts and responses of random lengths and random advantages."""
    gen = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, vocab, (int(torch.randint(1, max_prompt + 1, (1,), generator=gen)),),
                             generator=gen).tolist() for _ in range(rows)]
    response_lengths = torch.randint(1, max_response + 1, (rows,), generator=gen)
    response_mask = torch.arange(max_response)[None, :] < response_lengths[:, None]
    response_ids = torch.randint(0, vocab, (rows, max_response), generator=gen) * response_mask
    out = RolloutOutput(prompts, response_ids, torch.zeros(rows, max_response), response_mask,
                        torch.arange(rows) // 2)
    batch = batch_from_rollout(out, pad_token_id=0)
    return trainable(batch, old_logprobs=-torch.rand(rows, max_response, generator=gen) * 5,
                     advantages=torch.randn(rows, max_response, generator=gen))


def grouped_batch(groups: int = 3, n: int = 4, seed: int = 0, max_response: int = 6):
    """GRPO-shaped rows: `groups` prompts of different lengths, n responses each of random lengths, rows
    shuffled (as the update's mini-batches are), random advantages, and one response token per row left out
    of the loss (a tool result: attended to, not trained)."""
    gen = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(1, 300, (3 + 2 * g,), generator=gen).tolist() for g in range(groups)]
    lengths = torch.randint(2, max_response + 1, (groups * n,), generator=gen)
    real = torch.arange(max_response)[None, :] < lengths[:, None]
    trained = real.clone()
    trained[:, 1] = False
    out = RolloutOutput([p for p in prompts for _ in range(n)], torch.randint(1, 300, real.shape, generator=gen) * real,
                        None, trained, torch.arange(groups).repeat_interleave(n), context_mask=real)
    batch = batch_from_rollout(out, pad_token_id=0).select(torch.randperm(groups * n, generator=gen))
    return trainable(batch, old_logprobs=-torch.rand(real.shape, generator=gen) * 5,
                     advantages=torch.randn(real.shape, generator=gen))


def trainable(batch, old_logprobs, advantages, **more) -> AdvantageBatch:
    """`batch` as the update's stage: these log-probs and advantages (returns: the advantages), zero rewards."""
    zeros = torch.zeros(batch.rows)
    return AdvantageBatch.after(batch, scores=zeros, token_rewards=torch.zeros_like(advantages),
                                old_logprobs=old_logprobs, advantages=advantages, returns=advantages, **more)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_gloo(rank: int, world_size: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
