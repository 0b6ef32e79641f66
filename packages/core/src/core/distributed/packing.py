"""The padding-free forward: all rows of a micro-batch packed into one sequence.

Real tokens are concatenated into [1, tokens] and position ids restart at 0 for every row. With
no attention mask, transformers detects the restarts and attends block-causally: varlen
flash-attention (cu_seqlens) when the model runs with `flash_attention_2`, an exact block-diagonal
mask with sdpa/eager on CPU. No compute is spent on padding.
"""

from __future__ import annotations

import torch

from core.algorithms.entropy import entropy_from_logits
from core.algorithms.logprobs import logprobs_from_logits


def packed_response_logprobs(model: torch.nn.Module, batch, with_entropy: bool = False):
    """Log-probs [rows, response_len] (0 on masked positions) and entropies if asked.

    `batch` is a TrainingBatch (left-padded prompts, right-padded responses). Only the logits of
    positions that predict response tokens enter the log-softmax, chunked, so no [tokens, vocab]
    float32 tensor is built.
    """
    real = batch.attention_mask.bool()  # [rows, seq_len]
    packed_at = torch.full(real.shape, -1, dtype=torch.long, device=real.device)
    packed_at[real] = torch.arange(int(real.sum()), device=real.device)
    logits = model(
        input_ids=batch.input_ids[real].unsqueeze(0), position_ids=batch.position_ids[real].unsqueeze(0),
        use_cache=False,  # a KV cache turns off the packed-sequence detection
    ).logits[0]  # [tokens, vocab]
    response_mask = batch.response_mask.bool()  # [rows, response_len]
    response_len = response_mask.shape[1]
    # the logits at position t predict token t + 1: response token j of a row is predicted by the
    # packed position of its column prompt_len - 1 + j (a real token: prompts end at prompt_len - 1)
    predicting = packed_at[:, batch.prompt_len - 1 : batch.prompt_len - 1 + response_len]
    picked = logits[predicting[response_mask]]  # [response_tokens, vocab]
    logprobs = _scatter_rows(logprobs_from_logits(picked, batch.responses[response_mask]), response_mask)
    entropy = _scatter_rows(entropy_from_logits(picked), response_mask) if with_entropy else None
    return logprobs, entropy


def _scatter_rows(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[response_tokens] -> [rows, response_len] with zeros where `mask` is False."""
    out = torch.zeros(mask.shape, dtype=values.dtype, device=values.device)
    out[mask] = values
    return out
