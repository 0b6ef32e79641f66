"""The shared-prompt forward: each distinct prompt of a micro-batch runs once, and every response that
answers it attends to that one copy.

GRPO samples n responses per prompt, so the packed forward (core/distributed/packing.py) runs every prompt
n times: for 32 prompts of ~170 tokens x 8 responses of 256 tokens, 38k of the 109k tokens a step are
repeated prompt tokens. Here the micro-batch is packed as

    [prompt A][prompt B]...[response A1][response B1][response A2]...   (responses in row order)

with positions counting on from the prompt's end in every response, and each response's attention reads its
prompt's keys and values followed by its own (a gathered key list; causal, aligned to the last key). Since a
response token sees exactly the tokens it saw in its own row, log-probs, entropies and gradients equal the
packed forward's up to float rounding (the prompt's gradient arrives summed over its responses instead of per
copy). The response's first token is predicted by its prompt's last position, so that position's logits are
kept once per response.

Needs the `tandem_varlen` attention (core/models/varlen_attention.py), which reads the gathered key list
(`SHARED_KEYS`) handed to every layer with the segments' bounds. Under data parallelism the worker group keeps
a prompt's rows on one rank where the groups split evenly over the ranks (`batching.data_parallel_rows`);
otherwise rows are spread by length and each rank runs its own copy of a prompt it holds rows of.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.algorithms.entropy import logprobs_and_entropy_from_logits
from core.algorithms.logprobs import logprobs_from_logits
from core.distributed.packing import IGNORE, response_labels, scatter_scored
from core.models.varlen_attention import SHARED_KEYS


@dataclass
class SharedPromptLayout:
    """One micro-batch packed with each distinct prompt once. A segment is a prompt or one response."""

    input_ids: torch.Tensor  # [1, tokens]
    position_ids: torch.Tensor  # [1, tokens] a prompt from 0, its responses from the prompt's length
    packed_at: torch.Tensor  # [rows, seq_len] packed position of each real token of each row (-1: padding)
    key_index: torch.Tensor  # [keys] packed positions each segment attends to, segment after segment
    cu_seq_q: torch.Tensor  # [segments + 1] int32 bounds of the segments' tokens (the queries)
    cu_seq_k: torch.Tensor  # [segments + 1] int32 bounds of their key lists in key_index
    max_q: int  # longest segment
    max_k: int  # longest key list

    def attention_kwargs(self) -> dict:
        """What every layer's attention reads (transformers' flash names for the bounds, as packing.py)."""
        return {SHARED_KEYS: self.key_index, "cu_seq_lens_q": self.cu_seq_q, "cu_seq_lens_k": self.cu_seq_k,
                "max_length_q": self.max_q, "max_length_k": self.max_k}


def shared_prompt_layout(input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                         prompt_len: int) -> SharedPromptLayout:
    """The layout of rows [rows, seq_len] whose first `prompt_len` columns are the (left-padded) prompt and the
    rest the (right-padded) response: every distinct prompt once, then every row's response, in row order.

    Rows with the same prompt tokens share one copy, whatever their order; a response (tool results included)
    is its own segment. Built on the host with tensor ops (no loop over rows): one read-back per micro-batch.
    """
    ids, real, positions = (t.cpu() for t in (input_ids, attention_mask.bool(), position_ids))
    prompt_real, response_real = real[:, :prompt_len], real[:, prompt_len:]
    prompts = ids[:, :prompt_len].masked_fill(~prompt_real, -1)  # padding never equals a token
    distinct, prompt_of_row = torch.unique(prompts, dim=0, return_inverse=True)
    first_row = torch.full((len(distinct),), len(ids), dtype=torch.long).scatter_reduce(
        0, prompt_of_row, torch.arange(len(ids)), "amin")  # each distinct prompt's first row
    prompt_lengths = prompt_real[first_row].sum(-1)  # [prompts]
    response_lengths = response_real.sum(-1)  # [rows]
    prompt_starts = _starts(prompt_lengths)
    response_starts = int(prompt_lengths.sum()) + _starts(response_lengths)

    packed_at = torch.full(ids.shape, -1, dtype=torch.long)
    packed_at[:, :prompt_len] = torch.where(
        prompt_real, prompt_starts[prompt_of_row, None] + prompt_real.cumsum(-1) - 1, -1)
    packed_at[:, prompt_len:] = torch.where(
        response_real, response_starts[:, None] + response_real.cumsum(-1) - 1, -1)

    answered = response_lengths > 0  # rows without response tokens have no segment
    own_prompt = prompt_of_row[answered]
    # key spans: each prompt its own; each response its prompt's, then its own
    pairs = lambda a, b: torch.stack([a, b], 1).reshape(-1)  # noqa: E731  [a0, b0, a1, b1, ...]
    span_starts = torch.cat([prompt_starts, pairs(prompt_starts[own_prompt], response_starts[answered])])
    span_lengths = torch.cat([prompt_lengths, pairs(prompt_lengths[own_prompt], response_lengths[answered])])
    query_lengths = torch.cat([prompt_lengths, response_lengths[answered]])
    key_lengths = torch.cat([prompt_lengths, prompt_lengths[own_prompt] + response_lengths[answered]])
    device = input_ids.device
    packed = lambda t: torch.cat([t[first_row][:, :prompt_len][prompt_real[first_row]],  # noqa: E731
                                  t[:, prompt_len:][response_real]]).unsqueeze(0).to(device)
    return SharedPromptLayout(
        input_ids=packed(ids),
        position_ids=packed(positions),
        packed_at=packed_at.to(device),
        key_index=_spans(span_starts, span_lengths).to(device),
        cu_seq_q=_bounds(query_lengths).to(device),
        cu_seq_k=_bounds(key_lengths).to(device),
        max_q=int(query_lengths.max()),
        max_k=int(key_lengths.max()),
    )


def _starts(lengths: torch.Tensor) -> torch.Tensor:
    """Where each of back-to-back pieces of `lengths` starts: [3, 1, 2] -> [0, 3, 4]."""
    return lengths.cumsum(0) - lengths


def _bounds(lengths: torch.Tensor) -> torch.Tensor:
    """Cumulative bounds, int32 as the varlen kernels take them: [3, 1, 2] -> [0, 3, 4, 6]."""
    return torch.cat([lengths.new_zeros(1), lengths.cumsum(0)]).to(torch.int32)


def _spans(starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The indices of spans laid end to end: starts [5, 0], lengths [2, 3] -> [5, 6, 0, 1, 2]."""
    offsets = torch.repeat_interleave(starts - _starts(lengths), lengths)
    return offsets + torch.arange(int(lengths.sum()))


def shared_prompt_tokens(attention_mask: torch.Tensor, prompt_len: int, group_ids: torch.Tensor) -> int:
    """Tokens the shared-prompt forward runs for these rows: each group's prompt once, every response. Counted
    by group id (a GRPO group shares one prompt by construction), for the planner's speed; the layout itself
    matches prompts by their tokens, so rows of one group id with different prompts run a copy each."""
    lengths = attention_mask.sum(-1)
    prompt_lengths = attention_mask[:, :prompt_len].sum(-1)
    once = torch.zeros(int(group_ids.max()) + 1 if len(group_ids) else 0, dtype=lengths.dtype)
    once[group_ids] = prompt_lengths  # one prompt length per group present
    return int((lengths - prompt_lengths).sum() + once.sum())


def shared_prompt_logprobs(model: torch.nn.Module, batch, with_entropy: bool = False, temperature: float = 1.0):
    """Log-probs [rows, response_len] (0 on masked positions) and entropies if asked: `packed_response_logprobs`'s
    results by the shared-prompt forward. `batch` is a TrainingBatch."""
    labels, columns = response_labels(batch)
    layout = shared_prompt_layout(batch.input_ids, batch.attention_mask, batch.position_ids, batch.prompt_len)
    scored = labels != IGNORE  # [rows, seq_len]
    picked = model(
        input_ids=layout.input_ids, position_ids=layout.position_ids, use_cache=False,
        logits_to_keep=layout.packed_at[scored],  # a prompt's last position once per response it starts
        **layout.attention_kwargs(),
    ).logits[0]  # [scored_tokens, vocab]
    if with_entropy:
        logprobs, entropy = logprobs_and_entropy_from_logits(picked, labels[scored], temperature=temperature)
        return scatter_scored(logprobs, scored)[:, columns], scatter_scored(entropy, scored)[:, columns]
    logprobs = logprobs_from_logits(picked, labels[scored], temperature=temperature)
    return scatter_scored(logprobs, scored)[:, columns], None
