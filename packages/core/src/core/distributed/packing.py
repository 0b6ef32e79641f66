"""The padding-free forward: all rows of a micro-batch packed into one sequence.

Real tokens are concatenated into [1, tokens] and position ids restart at 0 for every row. With
no attention mask, transformers detects the restarts and attends block-causally: varlen
flash-attention (cu_seqlens) when the model runs with `flash_attention_2`, an exact block-diagonal
mask with sdpa/eager on CPU. No compute is spent on padding.

`packed_token_logprobs` is the general entry (any padding layout, a label per scored position:
SFT's next-token labels); `packed_response_logprobs` is RL's TrainingBatch view of it.
"""

from __future__ import annotations

import torch

from core.algorithms.entropy import logprobs_and_entropy_from_logits
from core.algorithms.logprobs import logprobs_from_logits

IGNORE = -100  # label of a position whose prediction is not scored


def packed_token_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          labels: torch.Tensor, position_ids: torch.Tensor | None = None, with_entropy: bool = False,
                          temperature: float = 1.0):
    """Log-probs [rows, seq_len] of `labels` under the packed forward (0 where not scored), and entropies if asked.

    input_ids, attention_mask, labels: [rows, seq_len], rows padded on either side. labels[r, t] is
    the token the logits at position t must predict (usually input_ids[r, t + 1]), IGNORE where
    nothing is scored; scored positions must be real tokens. position_ids default to 0 at each row's
    first real token. The LM head runs on the scored positions only (`logits_to_keep`), so no
    [tokens, vocab] tensor is built for prompt tokens. `temperature` scores under softmax(logits / T).
    """
    real = attention_mask.bool()  # [rows, seq_len]
    if position_ids is None:
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    packed_at = torch.full(real.shape, -1, dtype=torch.long, device=real.device)
    packed_at[real] = torch.arange(int(real.sum()), device=real.device)
    scored = labels != IGNORE  # [rows, seq_len]
    packed_positions = position_ids[real].unsqueeze(0)
    picked = model(
        input_ids=input_ids[real].unsqueeze(0), position_ids=packed_positions,
        use_cache=False,  # a KV cache turns off the packed-sequence detection
        logits_to_keep=packed_at[scored],  # packed positions of the scored tokens
        **row_bound_kwargs(packed_positions),
    ).logits[0]  # [scored_tokens, vocab]
    if with_entropy:
        logprobs, entropy = logprobs_and_entropy_from_logits(picked, labels[scored], temperature=temperature)
        return scatter_scored(logprobs, scored), scatter_scored(entropy, scored)
    return scatter_scored(logprobs_from_logits(picked, labels[scored], temperature=temperature), scored), None


def row_bound_kwargs(packed_positions: torch.Tensor) -> dict:
    """The packed rows' bounds, found once per forward and handed to every layer's attention under the names
    transformers' flash path reads (cu_seq_lens_q/k, max_length_q/k): found inside each layer instead, the
    longest row is read back to the host 24 times a forward, each time stalling the GPU queue."""
    from core.models.varlen_attention import row_bounds

    cumulative, longest = row_bounds(packed_positions)
    return dict(cu_seq_lens_q=cumulative, cu_seq_lens_k=cumulative, max_length_q=longest, max_length_k=longest)


def packed_response_logprobs(model: torch.nn.Module, batch, with_entropy: bool = False, temperature: float = 1.0):
    """Log-probs [rows, response_len] (0 on masked positions) and entropies if asked.

    `batch` is a TrainingBatch (left-padded prompts, right-padded responses): response token j of
    a row is predicted by column prompt_len - 1 + j (a real token: prompts end at prompt_len - 1).
    """
    labels, columns = response_labels(batch)
    logprobs, entropy = packed_token_logprobs(
        model, batch.input_ids, batch.attention_mask, labels, batch.position_ids, with_entropy, temperature
    )
    return logprobs[:, columns], None if entropy is None else entropy[:, columns]


def response_labels(batch) -> tuple[torch.Tensor, slice]:
    """(labels [rows, seq_len], the columns predicting the response): each trained response token as the label
    of the column before it, IGNORE elsewhere. `batch` is a TrainingBatch."""
    response_mask = batch.response_mask.bool()  # [rows, response_len]
    columns = slice(batch.prompt_len - 1, batch.prompt_len - 1 + response_mask.shape[1])
    labels = torch.full_like(batch.input_ids, IGNORE)
    labels[:, columns] = batch.responses.masked_fill(~response_mask, IGNORE)
    return labels, columns


def scatter_scored(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[scored_tokens] -> mask.shape with zeros where `mask` is False."""
    out = torch.zeros(mask.shape, dtype=values.dtype, device=values.device)
    out[mask] = values
    return out
