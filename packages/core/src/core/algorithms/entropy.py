"""Entropy of the token distributions given by logits, computed in chunks of tokens (alone, or fused
with the label log-probs when both are wanted: one log-softmax per chunk instead of two).

Same memory discipline as logprobs.py: only [chunk_size, vocab] floats exist at once, in forward
and in backward. H = logsumexp(z) - sum_j p_j z_j, and dH/dz_k = -p_k (log p_k + H).
"""

from __future__ import annotations

import torch

from core.algorithms.logprobs import (
    DEFAULT_CHUNK_SIZE, _checked, chunk_kernel, chunked_logits_grad, flatten_tokens, tempered_chunk, token_chunks,
)


def _zero_where_impossible(probs: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    # a -inf logit (a banned token) has p = 0; 0 * -inf would be NaN, its true contribution is 0
    return torch.where(probs > 0, probs * values, torch.zeros_like(values))


class _ChunkedEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, chunk_size: int, temperature: float) -> torch.Tensor:
        flat, lead_shape = flatten_tokens(logits)
        entropy = torch.empty(flat.shape[0], dtype=torch.float32, device=flat.device)
        logsumexp = torch.empty_like(entropy)
        for rows in token_chunks(flat.shape[0], chunk_size):
            chunk = tempered_chunk(flat, rows, temperature)
            logsumexp[rows] = torch.logsumexp(chunk, dim=-1)
            probs = torch.exp(chunk - logsumexp[rows].unsqueeze(1))
            entropy[rows] = logsumexp[rows] - _zero_where_impossible(probs, chunk).sum(-1)
        ctx.save_for_backward(logits, logsumexp, entropy)
        ctx.chunk_size, ctx.temperature = chunk_size, temperature
        return entropy.reshape(lead_shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        logits, logsumexp, entropy = ctx.saved_tensors
        flat_grad = grad_output.reshape(-1, 1).float()

        def chunk_grad(rows: slice, log_probs: torch.Tensor) -> torch.Tensor:
            shifted = log_probs + entropy[rows].unsqueeze(1)
            return -flat_grad[rows] * _zero_where_impossible(torch.exp(log_probs), shifted)

        return chunked_logits_grad(logits, logsumexp, ctx.chunk_size, chunk_grad, ctx.temperature), None, None


def entropy_from_logits(
    logits: torch.Tensor, chunk_size: int = DEFAULT_CHUNK_SIZE, temperature: float = 1.0
) -> torch.Tensor:
    """Entropy (nats) of softmax(logits / temperature) per token: [..., vocab] -> [...], float32, differentiable."""
    return _ChunkedEntropy.apply(logits, chunk_size, _checked(temperature))


class _ChunkedLogprobsAndEntropy(torch.autograd.Function):
    """Both from one log-softmax per chunk: the separate functions would each walk the logits."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, chunk_size: int, temperature: float):
        ctx.set_materialize_grads(False)  # an unused output (entropy with entropy_coef 0) costs no backward work
        flat, lead_shape = flatten_tokens(logits)
        flat_labels = labels.reshape(-1, 1)
        logprobs = torch.empty(flat.shape[0], dtype=torch.float32, device=flat.device)
        entropy, logsumexp = torch.empty_like(logprobs), torch.empty_like(logprobs)
        kernel = chunk_kernel(_logprobs_entropy_chunk, flat)
        for rows in token_chunks(flat.shape[0], chunk_size):
            logsumexp[rows], logprobs[rows], entropy[rows] = kernel(flat[rows], flat_labels[rows], temperature)
        ctx.save_for_backward(logits, labels, logsumexp, entropy)
        ctx.chunk_size, ctx.temperature = chunk_size, temperature
        return logprobs.reshape(lead_shape), entropy.reshape(lead_shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_logprobs, grad_entropy):
        logits, labels, logsumexp, entropy = ctx.saved_tensors
        if grad_logprobs is None and grad_entropy is None:
            return None, None, None, None
        flat, _ = flatten_tokens(logits)
        flat_labels = labels.reshape(-1, 1)
        g_lp = None if grad_logprobs is None else grad_logprobs.reshape(-1, 1).float()
        g_h = None if grad_entropy is None else grad_entropy.reshape(-1, 1).float()
        grad_logits = torch.empty_like(flat)
        kernel = chunk_kernel(_logprobs_entropy_chunk_grad, flat)
        for rows in token_chunks(flat.shape[0], ctx.chunk_size):
            grad_logits[rows] = kernel(flat[rows], flat_labels[rows], logsumexp[rows], entropy[rows],
                                       None if g_lp is None else g_lp[rows], None if g_h is None else g_h[rows],
                                       ctx.temperature)
        return grad_logits.reshape(logits.shape), None, None, None


def _logprobs_entropy_chunk(chunk: torch.Tensor, labels: torch.Tensor, temperature: float):
    """(logsumexp, label log-prob, entropy) [chunk] of one chunk of logits [chunk, vocab]; labels [chunk, 1]."""
    z = tempered_chunk(chunk, slice(None), temperature)
    logsumexp = torch.logsumexp(z, dim=-1)
    log_probs = z - logsumexp.unsqueeze(1)
    entropy = -_zero_where_impossible(torch.exp(log_probs), log_probs).sum(-1)
    return logsumexp, log_probs.gather(1, labels).squeeze(1), entropy


def _logprobs_entropy_chunk_grad(chunk, labels, logsumexp, entropy, g_lp, g_h, temperature: float):
    """The chunk's gradient w.r.t. its logits, in their dtype, given the upstream gradients g_lp, g_h [chunk, 1]
    (either may be None: that output was unused)."""
    log_probs = tempered_chunk(chunk, slice(None), temperature) - logsumexp.unsqueeze(1)
    probs = torch.exp(log_probs)
    grad = torch.zeros_like(log_probs)
    if g_lp is not None:  # d logp(y) / dz = onehot(y) - p
        grad = (-g_lp * probs).scatter_add(1, labels, g_lp)
    if g_h is not None:  # dH / dz = -p (log p + H)
        grad = grad - g_h * _zero_where_impossible(probs, log_probs + entropy.unsqueeze(1))
    return (grad if temperature == 1.0 else grad / temperature).to(chunk.dtype)


def logprobs_and_entropy_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, chunk_size: int = DEFAULT_CHUNK_SIZE, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """`logprobs_from_logits` and `entropy_from_logits` of the same logits in one chunked pass (and one
    backward walk): equal to the two, each differentiable; float32, shaped like `labels`."""
    return _ChunkedLogprobsAndEntropy.apply(logits, labels.long(), chunk_size, _checked(temperature))
