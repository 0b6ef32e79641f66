"""Log-probabilities of labels from logits, computed in chunks of tokens.

A [tokens, vocab] log_softmax in float32 is the largest tensor of an RL step (152k vocab x 8k
tokens = 5 GB). Here forward and backward both walk the tokens `chunk_size` rows at a time, so
only one chunk's softmax exists at once; autograd saves the logits (which exist anyway) and one
logsumexp per token. The gradient is exact: d logp(y) / d z = onehot(y) - softmax(z).

`temperature` scores the tokens under softmax(z / T), the distribution a sampler with temperature T
drew them from; scaling inside each chunk spares a tempered copy of the logits. With z' = z / T the
gradient is (onehot(y) - softmax(z')) / T.
"""

from __future__ import annotations

from typing import Callable, Iterator, Tuple

import torch

DEFAULT_CHUNK_SIZE = 1024
_compiled_kernels: dict[Callable, Callable] = {}
_use_compiled = False


def use_compiled_kernels(enabled: bool) -> None:
    """Run the per-chunk math (`chunk_kernel`'s functions) compiled on CUDA tensors from now on
    (`trainer.compile`). Eager, each chunk is ~10 passes over [chunk, vocab] floats (cast, logsumexp's
    own passes, exp, products, sums; in backward as many again); compiled, about two."""
    global _use_compiled
    _use_compiled = bool(enabled)


def chunk_kernel(fn: Callable, like: torch.Tensor) -> Callable:
    """`fn`, compiled once (symbolic shapes: the last chunk is shorter) when compiled kernels are on and
    `like` is a CUDA tensor; `fn` itself otherwise (the CPU path, and the numbers compiled runs are tested against)."""
    if not (_use_compiled and like.is_cuda):
        return fn
    if fn not in _compiled_kernels:
        _compiled_kernels[fn] = torch.compile(fn, dynamic=True)
    return _compiled_kernels[fn]


def token_chunks(num_tokens: int, chunk_size: int) -> Iterator[slice]:
    for start in range(0, num_tokens, chunk_size):
        yield slice(start, min(start + chunk_size, num_tokens))


def flatten_tokens(logits: torch.Tensor) -> Tuple[torch.Tensor, torch.Size]:
    """[..., vocab] -> [tokens, vocab] and the leading shape to restore."""
    return logits.reshape(-1, logits.shape[-1]), logits.shape[:-1]


def tempered_chunk(flat: torch.Tensor, rows: slice, temperature: float) -> torch.Tensor:
    """One chunk of logits [chunk, vocab] in float32, divided by the sampling temperature."""
    chunk = flat[rows].float()
    return chunk if temperature == 1.0 else chunk / temperature


def chunked_logits_grad(
    logits: torch.Tensor,
    logsumexp: torch.Tensor,
    chunk_size: int,
    chunk_grad: Callable[[slice, torch.Tensor], torch.Tensor],
    temperature: float = 1.0,
) -> torch.Tensor:
    """Gradient w.r.t. logits [..., vocab], built chunk by chunk.

    chunk_grad(rows, log_probs) gets one chunk's float32 log-softmax of logits / temperature
    [chunk, vocab] and returns that chunk's gradient w.r.t. the tempered logits; logsumexp [tokens]
    is the forward pass's (of the tempered logits).
    """
    flat, _ = flatten_tokens(logits)
    grad_logits = torch.empty_like(flat)
    for rows in token_chunks(flat.shape[0], chunk_size):
        log_probs = tempered_chunk(flat, rows, temperature) - logsumexp[rows].unsqueeze(1)
        grad = chunk_grad(rows, log_probs)
        grad_logits[rows] = (grad if temperature == 1.0 else grad / temperature).to(flat.dtype)
    return grad_logits.reshape(logits.shape)


class _ChunkedLabelLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, chunk_size: int, temperature: float) -> torch.Tensor:
        flat, lead_shape = flatten_tokens(logits)
        flat_labels = labels.reshape(-1, 1)
        logprobs = torch.empty(flat.shape[0], dtype=torch.float32, device=flat.device)
        logsumexp = torch.empty_like(logprobs)
        kernel = chunk_kernel(_label_logprob_chunk, flat)
        for rows in token_chunks(flat.shape[0], chunk_size):
            logsumexp[rows], logprobs[rows] = kernel(flat[rows], flat_labels[rows], temperature)
        ctx.save_for_backward(logits, labels, logsumexp)
        ctx.chunk_size, ctx.temperature = chunk_size, temperature
        return logprobs.reshape(lead_shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        logits, labels, logsumexp = ctx.saved_tensors
        flat, _ = flatten_tokens(logits)
        flat_labels = labels.reshape(-1, 1)
        flat_grad = grad_output.reshape(-1, 1).float()
        grad_logits = torch.empty_like(flat)
        kernel = chunk_kernel(_label_logprob_chunk_grad, flat)
        for rows in token_chunks(flat.shape[0], ctx.chunk_size):
            grad_logits[rows] = kernel(flat[rows], flat_labels[rows], logsumexp[rows], flat_grad[rows], ctx.temperature)
        return grad_logits.reshape(logits.shape), None, None, None


def _label_logprob_chunk(chunk: torch.Tensor, labels: torch.Tensor, temperature: float):
    """(logsumexp, label log-prob) [chunk] of one chunk of logits [chunk, vocab]; labels [chunk, 1]."""
    z = tempered_chunk(chunk, slice(None), temperature)
    logsumexp = torch.logsumexp(z, dim=-1)
    return logsumexp, z.gather(1, labels).squeeze(1) - logsumexp


def _label_logprob_chunk_grad(chunk, labels, logsumexp, grad, temperature: float):
    """The chunk's gradient w.r.t. its logits, in their dtype: grad * (onehot(y) - p) / T; grad [chunk, 1]."""
    probs = torch.exp(tempered_chunk(chunk, slice(None), temperature) - logsumexp.unsqueeze(1))
    out = (-grad * probs).scatter_add(1, labels, grad)
    return (out if temperature == 1.0 else out / temperature).to(chunk.dtype)


def logprobs_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, chunk_size: int = DEFAULT_CHUNK_SIZE, temperature: float = 1.0
) -> torch.Tensor:
    """log softmax(logits / temperature)[label] for every token, float32, shaped like `labels`.

    logits: [..., vocab] (any float dtype; each chunk is upcast to float32); labels: [...] int64.
    Differentiable w.r.t. logits; never materialises more than [chunk_size, vocab] floats at once.
    """
    return _ChunkedLabelLogprobs.apply(logits, labels.long(), chunk_size, _checked(temperature))


def _checked(temperature: float) -> float:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 to score sampled tokens, got {temperature}")
    return float(temperature)
