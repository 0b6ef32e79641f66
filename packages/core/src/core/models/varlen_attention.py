"""Padding-free attention for packed rows without flash-attn: torch's own varlen kernel.

flash-attn is not installable everywhere (the project's GPU host has no compiler for it), but torch
ships `torch.nn.attention.varlen.varlen_attn` (flash kernels, with backward, CUDA only). This module
registers it with transformers as the attention implementation `tandem_varlen`:

- packed rows ([1, tokens], position ids restarting at 0, no attention mask): one varlen call over
  the rows' cumulative lengths, so no block-diagonal [tokens x tokens] mask is built;
- the shared-prompt layout (core/distributed/shared_prompts.py): the same call, each response's keys
  gathered as its prompt's followed by its own;
- anything else (a padded batch with a 2-D mask, generation with a KV cache): transformers' sdpa path,
  so a model loaded with this kernel still generates and scores padded batches correctly.

On CPU tensors (and fp32 ones, which flash kernels do not take) the varlen call falls back to one causal sdpa per row: the same numbers, tested
against sdpa's block-diagonal packed forward (tests/distributed/test_varlen_attention.py).
"""

from __future__ import annotations

import functools
import inspect

import torch
import torch.nn.functional as F

NAME = "tandem_varlen"
SHARED_KEYS = "shared_prompt_keys"  # attention kwarg: the shared-prompt layout's gathered key list


def varlen_kernel_available() -> bool:
    import importlib.util

    return torch.cuda.is_available() and importlib.util.find_spec("torch.nn.attention.varlen") is not None


@functools.cache
def register() -> str:
    """Register `tandem_varlen` with transformers (once); returns the name to load models with."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    def mask(*args, attention_mask=None, **kwargs):
        # padding-free input needs no mask (the rows' bounds come from the position ids); a padded batch
        # gets sdpa's mask, for the sdpa path below
        return None if attention_mask is None else sdpa_mask(*args, attention_mask=attention_mask, **kwargs)

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, mask)
    return NAME


def row_bounds(position_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(cumulative row lengths [rows + 1] int32, longest row) of one packed sequence's position ids [1, tokens]."""
    positions = position_ids.reshape(-1)
    starts = torch.nonzero(positions == 0).reshape(-1)
    ends = torch.cat([starts[1:], starts.new_tensor([positions.numel()])])
    cumulative = torch.cat([starts.new_zeros(1), ends]).to(torch.int32)
    return cumulative, int((ends - starts).max())


def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention signature: query [1, heads, tokens, dim], key/value [1, kv_heads, tokens, dim];
    returns ([1, tokens, heads, dim], None)."""
    position_ids = kwargs.get("position_ids")
    packed = (attention_mask is None and position_ids is not None and query.shape[0] == 1
              and query.shape[2] == key.shape[2])
    if not packed:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    if dropout:
        raise ValueError(f"{NAME} attention has no dropout; this model asks for {dropout}")
    cumulative, longest = kwargs.get("cu_seq_lens_q"), kwargs.get("max_length_q")
    if cumulative is None:  # not found once for the whole forward (core.distributed.packing does)
        cumulative, longest = row_bounds(position_ids)
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [tokens, heads, dim]
    if q.is_cuda and torch.is_autocast_enabled("cuda"):  # fp32 weights (trainer.master_weights): the rotary
        # embedding's fp32 cos/sin promote q and k back to fp32; compute in autocast's dtype, as HF's flash path does
        q, k, v = (t.to(torch.get_autocast_dtype("cuda")) for t in (q, k, v))
    bounds = (cumulative, cumulative, longest, longest)
    shared_keys = kwargs.get(SHARED_KEYS)  # core/distributed/shared_prompts.py: [prompt ; own] per segment
    if shared_keys is not None:
        k, v = k[shared_keys], v[shared_keys]
        bounds = (cumulative, kwargs["cu_seq_lens_k"], longest, kwargs["max_length_k"])
    if kwargs.get("softcap") is not None:
        raise ValueError(f"{NAME} attention has no logit soft-capping; this model asks for {kwargs['softcap']}")
    # a sliding-window layer (Gemma 3: 512 tokens) sees only its last `window` keys; shorter rows are unaffected
    window = kwargs.get("sliding_window")
    window = window if window is not None and bounds[3] > window else None  # bounds[3]: the most keys a segment has
    flash = q.is_cuda and q.dtype in (torch.bfloat16, torch.float16)  # the flash kernels' only dtypes
    out = (varlen_causal if flash else rowwise_causal)(q, k, v, *bounds, scaling, window)
    return out.unsqueeze(0), None


def varlen_causal(q, k, v, cu_q, cu_k, max_q, max_k, scale, window=None):
    """Causal varlen attention; a segment with more keys than queries aligns its queries with its last keys
    (the flash kernels' bottom-right rule), as a response after its shared prompt needs. `window`: each
    query sees itself and the `window - 1` keys before it (transformers' sliding window)."""
    from torch.nn.attention.varlen import varlen_attn

    accepted = _varlen_parameters()
    if window is not None and "window_size" not in accepted:
        raise ValueError(f"torch {torch.__version__}'s varlen_attn has no sliding window; pack rows of at most "
                         f"{window} tokens or use trainer.remove_padding=false")
    left = -1 if window is None else window - 1
    options = {"window_size": (left, 0)} if "window_size" in accepted else {"is_causal": True}  # torch > 2.10 / 2.10
    if "scale" in accepted:
        options["scale"] = scale
    if q.shape[1] != k.shape[1]:  # grouped-query attention
        if "enable_gqa" in accepted:
            options["enable_gqa"] = True
        else:
            k, v = (t.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for t in (k, v))
    return varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, **options)


@functools.cache
def _varlen_parameters() -> frozenset[str]:
    from torch.nn.attention.varlen import varlen_attn

    return frozenset(inspect.signature(varlen_attn).parameters)


def rowwise_causal(q, k, v, cu_q, cu_k, max_q, max_k, scale, window=None):
    """The CPU fallback: causal sdpa segment by segment over [tokens, heads, dim] tensors, queries aligned with
    the last keys where a segment has more keys than queries (as `varlen_causal`), within `window` if given."""
    rows = []
    for (q_start, q_end), (k_start, k_end) in zip(_segments(cu_q), _segments(cu_k)):
        qi = q[q_start:q_end].transpose(0, 1)  # [heads, queries, dim]
        ki, vi = (t[k_start:k_end].transpose(0, 1) for t in (k, v))  # [kv_heads, keys, dim]
        queries, keys = qi.shape[1], ki.shape[1]
        # sdpa's is_causal aligns top-left; query i sees keys up to keys - queries + i
        causal = dict(is_causal=True) if queries == keys and window is None else dict(
            attn_mask=_causal_mask(queries, keys, window, q.device))
        rows.append(F.scaled_dot_product_attention(qi, ki, vi, scale=scale, enable_gqa=qi.shape[0] != ki.shape[0],
                                                   **causal).transpose(0, 1))
    return torch.cat(rows)


def _causal_mask(queries: int, keys: int, window: int | None, device) -> torch.Tensor:
    """[queries, keys] bool: query i (aligned with the last keys) sees keys up to keys - queries + i, and with a
    window only the last `window` of those."""
    allowed = torch.ones(queries, keys, dtype=torch.bool, device=device).tril(keys - queries)
    return allowed if window is None else allowed.triu(keys - queries - window + 1)


def _segments(cumulative: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of each segment of cumulative bounds: [0, 3, 4] -> [(0, 3), (3, 4)]."""
    bounds = cumulative.tolist()
    return list(zip(bounds[:-1], bounds[1:]))
