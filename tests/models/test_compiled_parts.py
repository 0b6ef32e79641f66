"""`trainer.compile`: the compiled norms/MLPs and log-prob chunk kernels compute what the eager ones do.

Compiled here with torch's `aot_eager` backend (the same Dynamo trace and autograd graphs as inductor,
without generating kernels: seconds instead of ~20 s per graph on 2 cores) and `fullgraph=True`, so a
graph break would fail the test rather than silently run eager. Inductor's own kernels run on the GPU
(benchmarks/grpo_step.py)."""

from __future__ import annotations

import copy

import pytest
import torch

from core.algorithms import logprobs as logprob_module
from core.algorithms.entropy import (
    _logprobs_entropy_chunk, _logprobs_entropy_chunk_grad, logprobs_and_entropy_from_logits,
)
from core.algorithms.logprobs import _label_logprob_chunk, _label_logprob_chunk_grad
from core.models.compiled_parts import compile_layer_parts, resolve_compile


def compiled(fn):
    return torch.compile(fn, backend="aot_eager", fullgraph=True, dynamic=True)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_chunk_kernels_trace_whole_and_equal_eager(temperature):
    torch.manual_seed(0)
    logits = torch.randn(6, 50, dtype=torch.bfloat16)
    logits[0, 3] = float("-inf")  # a banned token: p = 0 must not turn into NaN
    labels = torch.randint(4, 50, (6, 1))
    eager = _logprobs_entropy_chunk(logits, labels, temperature)
    for got, want in zip(compiled(_logprobs_entropy_chunk)(logits, labels, temperature), eager):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    logsumexp, _, entropy = eager
    g_lp, g_h = torch.randn(6, 1), torch.randn(6, 1)
    for upstream in [(g_lp, g_h), (g_lp, None), (None, g_h)]:  # None: that output went unused
        want = _logprobs_entropy_chunk_grad(logits, labels, logsumexp, entropy, *upstream, temperature)
        got = compiled(_logprobs_entropy_chunk_grad)(logits, labels, logsumexp, entropy, *upstream, temperature)
        assert got.dtype == torch.bfloat16 and torch.isfinite(got.float()).all()
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    # the label-only pair (SFT's loss, and RL without entropies)
    for got, want in zip(compiled(_label_logprob_chunk)(logits, labels, temperature),
                         _label_logprob_chunk(logits, labels, temperature)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    want = _label_logprob_chunk_grad(logits, labels, logsumexp, g_lp, temperature)
    torch.testing.assert_close(compiled(_label_logprob_chunk_grad)(logits, labels, logsumexp, g_lp, temperature), want,
                               rtol=0, atol=0)


def test_chunk_kernels_stay_eager_on_cpu_tensors_even_when_switched_on(monkeypatch):
    monkeypatch.setattr(logprob_module, "_use_compiled", True)
    assert logprob_module.chunk_kernel(_logprobs_entropy_chunk, torch.zeros(1)) is _logprobs_entropy_chunk
    logits, labels = torch.randn(3, 5, 11, requires_grad=True), torch.randint(0, 11, (3, 5))
    logprobs, entropy = logprobs_and_entropy_from_logits(logits, labels, chunk_size=4)
    (logprobs.sum() + entropy.sum()).backward()  # the kernels' callers run forward and backward
    reference = torch.log_softmax(logits.detach(), -1)
    torch.testing.assert_close(logprobs, reference.gather(-1, labels.unsqueeze(-1)).squeeze(-1))


def test_compile_layer_parts_compiles_norms_and_mlp_not_attention_and_keeps_the_numbers():
    from transformers import AutoModelForCausalLM

    from core.models.builtin import resolve_model_path

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path("builtin:tiny-qwen2"))
    eager = copy.deepcopy(model)
    compile_layer_parts(model, backend="aot_eager")
    layer = model.model.layers[0]
    assert layer.mlp._compiled_call_impl is not None and layer.input_layernorm._compiled_call_impl is not None
    assert layer.self_attn._compiled_call_impl is None
    for shape in [(2, 9), (3, 14)]:  # a new length needs no new graph (dynamic shapes) and gives the same numbers
        ids = torch.randint(0, 200, shape)
        got, want = model(input_ids=ids).logits, eager(input_ids=ids).logits
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(layer.mlp.up_proj.weight.grad, eager.model.layers[0].mlp.up_proj.weight.grad,
                               rtol=1e-4, atol=1e-5)  # float sums in another order


def test_compile_defaults_to_the_backends_answer_and_an_explicit_setting_wins():
    from core.plugins.manager import load_backend

    cpu, cuda, rocm = (load_backend(name).compiles_by_default for name in ("cpu", "cuda", "rocm"))
    assert (cpu, cuda, rocm) == (False, True, True)
    assert resolve_compile(None, cpu) is False and resolve_compile(None, cuda) is True
    assert resolve_compile(True, False) is True and resolve_compile(False, True) is False


def test_a_failing_compiler_is_one_line_and_null_falls_back_to_eager(monkeypatch, caplog):
    from core.errors import TandemError
    from core.models import compiled_parts

    def broken(*args, **kwargs):
        raise RuntimeError("Cannot find a working triton installation.\n  (a long traceback would follow)")

    monkeypatch.setattr(torch, "compile", broken)
    assert compiled_parts.compile_failure(torch.device("cpu")) == "RuntimeError: Cannot find a working triton installation."
    cuda = torch.device("cuda")  # only resolved and named here: compile_failure runs on the CPU below
    monkeypatch.setattr(compiled_parts, "compile_failure", lambda device: "RuntimeError: no triton")
    with caplog.at_level("WARNING", logger="tandem"):
        assert compiled_parts.use_compile(None, cuda, by_default=True) is False
    assert "running eager" in caplog.text and "no triton" in caplog.text
    with pytest.raises(TandemError, match=r"trainer.compile=true, but torch.compile fails on cpu: RuntimeError: no triton"):
        compiled_parts.use_compile(True, torch.device("cpu"), by_default=False)
    assert compiled_parts.use_compile(None, torch.device("cpu"), by_default=False) is False  # not even checked
