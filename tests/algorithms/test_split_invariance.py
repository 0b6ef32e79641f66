"""A step's loss and gradients do not depend on how its batch is split over micro-batches and ranks.

Reference: the whole batch in one forward/backward. Split: the batch dealt over 2 gloo ranks, each
rank's half cut into 2 micro-batches; every micro-batch divides by the GLOBAL counts, gradients
are summed over micro-batches and all-reduced (SUM) over ranks. A tiny linear model produces the
log-probs, so the gradients are real parameter gradients.
"""

import datetime
import faulthandler
import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from core.algorithms import (
    LOSS_AGG_MODES,
    POLICY_LOSSES,
    compute_policy_loss,
    logprobs_from_logits,
    loss_counts,
    value_loss,
)
from core.algorithms.policy_loss import PolicyLossOptions

BATCH, LENGTH, FEATURES, VOCAB, HORIZON = 8, 5, 4, 6, 5
WORLD = 2
TIMEOUT_S = 60


def _batch():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(BATCH, LENGTH, FEATURES, generator=g, dtype=torch.float64)
    labels = torch.randint(0, VOCAB, (BATCH, LENGTH), generator=g)
    lengths = torch.tensor([5, 1, 3, 0, 4, 2, 5, 3])  # row 3 fully masked
    mask = (torch.arange(LENGTH) < lengths.unsqueeze(1)).double()
    mask[0, 2] = 0  # a hole
    advantages = torch.randn(BATCH, LENGTH, generator=g, dtype=torch.float64)
    returns = torch.randn(BATCH, LENGTH, generator=g, dtype=torch.float64)
    return features, labels, mask, advantages, returns


def _model():
    torch.manual_seed(1)
    return torch.nn.Linear(FEATURES, VOCAB + 1, dtype=torch.float64)  # last output: a value head


def _old_model_outputs(features, labels):
    # a slightly different policy made the rollout, so ratios differ from 1 and some clip
    with torch.no_grad():
        old = _model()
        for p in old.parameters():
            p.add_(0.3 * torch.randn_like(p))
        out = old(features)
        return logprobs_from_logits(out[..., :VOCAB], labels, chunk_size=7).double(), out[..., VOCAB]


def _step_losses(model, rows, counts, loss_name, mode):
    """Policy loss + value loss of the rows `rows`, normalised by the global `counts`."""
    features, labels, mask, advantages, returns = (t[rows] for t in _batch())
    old_logprobs, old_values = _old_model_outputs(features, labels)
    out = model(features)
    logprobs = logprobs_from_logits(out[..., :VOCAB], labels, chunk_size=3).double()
    policy, _ = compute_policy_loss(
        loss_name, logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages, response_mask=mask,
        loss_agg_mode=mode, global_token_count=counts.tokens, global_seq_count=counts.sequences, horizon=HORIZON,
        options=PolicyLossOptions(clip_ratio_low=0.1, clip_ratio_high=0.15),
    )
    value, _ = value_loss(
        out[..., VOCAB], old_values, returns, mask, 0.05, mode, counts.tokens, counts.sequences, HORIZON
    )
    return policy + value


def _whole_batch(loss_name, mode):
    model = _model()
    counts = loss_counts(_batch()[2])
    loss = _step_losses(model, torch.arange(BATCH), counts, loss_name, mode)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _split(loss_name, mode, rank_rows, all_reduce):
    """Micro-batches of 2 rows over this rank's rows; returns the summed loss and gradients."""
    model = _model()
    micro_batches = [rank_rows[i : i + 2] for i in range(0, len(rank_rows), 2)]
    mask = _batch()[2]
    counts = loss_counts([mask[rows] for rows in micro_batches])
    if all_reduce:
        counts = counts.all_reduce()
    total = torch.zeros((), dtype=torch.float64)
    for rows in micro_batches:
        loss = _step_losses(model, rows, counts, loss_name, mode)
        loss.backward()  # gradients accumulate (sum) over micro-batches
        total += loss.detach()
    grads = [p.grad.clone() for p in model.parameters()]
    if all_reduce:
        for tensor in [total, *grads]:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return total, grads


def _assert_same(split, whole, label):
    (split_loss, split_grads), (whole_loss, whole_grads) = split, whole
    assert torch.allclose(split_loss, whole_loss, atol=1e-12), label
    for a, b in zip(split_grads, whole_grads):
        assert torch.allclose(a, b, atol=1e-12), label


# Clip-Cov and KL-Cov pick their tokens by statistics of the micro-batch they see (as verl's do), so a
# different split treats different tokens apart: not split-invariant by definition.
MICRO_BATCH_STATISTICS = ("clip_cov", "kl_cov")


def _combinations():
    return [(name, mode) for name in POLICY_LOSSES if name not in MICRO_BATCH_STATISTICS for mode in LOSS_AGG_MODES]


def test_micro_batches_in_one_process_match_whole_batch():
    for name, mode in _combinations():
        _assert_same(_split(name, mode, torch.arange(BATCH), all_reduce=False), _whole_batch(name, mode), (name, mode))


def _rank_main(rank, port):
    faulthandler.dump_traceback_later(TIMEOUT_S, exit=True)
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
        timeout=datetime.timedelta(seconds=TIMEOUT_S),
    )
    try:
        # rows dealt round-robin, so the ranks hold different token and sequence counts
        rank_rows = torch.arange(rank, BATCH, WORLD)
        for name, mode in _combinations():
            _assert_same(_split(name, mode, rank_rows, all_reduce=True), _whole_batch(name, mode), (name, mode))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_with_micro_batches_match_whole_batch():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    context = mp.spawn(_rank_main, args=(_free_port(),), nprocs=WORLD, join=False)
    deadline = time.monotonic() + 2 * TIMEOUT_S
    try:
        while not context.join(timeout=max(deadline - time.monotonic(), 0)):
            if time.monotonic() >= deadline:
                for process in context.processes:
                    process.kill()
                pytest.fail(f"the ranks did not finish in {2 * TIMEOUT_S} s")
    except mp.ProcessExitedException as exc:  # a rank hung and faulthandler ended it
        pytest.fail(f"a rank died: {exc}")
