"""The weight-sync copy plan against a model that loads like vLLM's (fused q/k/v and gate/up, a padded
embedding, loaders that transform): after one watched load, syncs are direct copies with the same result."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from core.rollout.copy_plan import CopyPlan
from core.rollout.vllm_worker import WeightSyncExtension

HIDDEN, Q, KV, FFN, VOCAB, PADDED_VOCAB = 4, 4, 2, 6, 5, 8


class VllmLikeModel(torch.nn.Module):
    """Parameters in vLLM's layout; `load_weights` maps HF names onto them the way vLLM's loaders do."""

    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Parameter(torch.zeros(Q + 2 * KV, HIDDEN))
        self.gate_up = torch.nn.Parameter(torch.zeros(2 * FFN, HIDDEN))
        self.embed = torch.nn.Parameter(torch.zeros(PADDED_VOCAB, HIDDEN))
        self.norm = torch.nn.Parameter(torch.zeros(HIDDEN))
        self.transposed = torch.nn.Parameter(torch.zeros(HIDDEN, FFN))
        self.assigned = torch.nn.Parameter(torch.zeros(HIDDEN))
        self.loaded: list[list[str]] = []  # the names of every load_weights call

    def load_weights(self, weights):
        self.loaded.append([name for name, _ in weights])
        slices = {"q": (self.qkv, 0, Q), "k": (self.qkv, Q, KV), "v": (self.qkv, Q + KV, KV),
                  "gate": (self.gate_up, 0, FFN), "up": (self.gate_up, FFN, FFN)}
        with torch.no_grad():
            for name, w in weights:
                if name in slices:  # stacked params: a slice of the fused tensor
                    param, start, size = slices[name]
                    param.data.narrow(0, start, size).copy_(w.narrow(0, 0, size))
                elif name == "embed":  # the vocabulary padded to a multiple: the first rows
                    self.embed[: w.shape[0]].data.copy_(w)
                elif name == "norm":
                    self.norm.data.copy_(w)
                elif name == "down_t":  # a loader that transforms: the plan must not replay it
                    self.transposed.data.copy_(w.t())
                elif name == "assigned":  # assignment, no copy_ call: invisible to the plan
                    self.assigned.data[:] = w


def hf_weights(seed: int):
    g = torch.Generator().manual_seed(seed)
    shapes = {"q": (Q, HIDDEN), "k": (KV, HIDDEN), "v": (KV, HIDDEN), "gate": (FFN, HIDDEN), "up": (FFN, HIDDEN),
              "embed": (VOCAB, HIDDEN), "norm": (HIDDEN,), "down_t": (FFN, HIDDEN), "assigned": (HIDDEN,)}
    return [(name, torch.randn(shape, generator=g)) for name, shape in shapes.items()]


def test_after_one_watched_load_syncs_are_direct_copies_with_load_weights_result():
    model, reference, plan = VllmLikeModel(), VllmLikeModel(), CopyPlan()
    assert plan.load(model, hf_weights(0)) == 0  # the first sync loads (and learns)
    assert set(plan.views) == {"q", "k", "v", "gate", "up", "embed", "norm"}
    assert plan.unplanned == {"down_t", "assigned"}
    assert plan.load(model, hf_weights(1)) == 7  # then 7 of 9 tensors are plain copies
    assert model.loaded[-1] == ["down_t", "assigned"]  # only what the plan cannot replay reaches the loaders
    reference.load_weights(hf_weights(1))
    for (name, got), (_, want) in zip(model.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=name)


def test_two_names_on_one_tensor_and_a_changed_shape_go_through_load_weights():
    model, plan = VllmLikeModel(), CopyPlan()
    norm = torch.randn(HIDDEN)
    plan.load(model, [("norm", norm), ("assigned", norm)])  # one tensor under two names: ambiguous, not planned
    assert plan.views == {} and plan.unplanned == {"norm", "assigned"}
    plan = CopyPlan()
    plan.load(model, [("norm", torch.randn(HIDDEN))])
    assert plan.load(model, [("norm", torch.randn(HIDDEN))]) == 1
    model.load_weights = lambda weights: model.loaded.append([name for name, _ in weights])  # takes any shape
    assert plan.load(model, [("norm", torch.randn(HIDDEN + 1))]) == 0  # a different tensor under an old name
    assert model.loaded[-1] == ["norm"] and "norm" not in plan.views  # goes to the loader, never copied blindly


def test_the_worker_uses_no_plan_where_loading_repacks_weights():
    model = VllmLikeModel()
    worker = WeightSyncExtension()
    worker.model_runner = SimpleNamespace(model=model)
    worker._tandem_layerwise = True
    worker.tandem_load_tensors(hf_weights(0))
    worker.tandem_load_tensors(hf_weights(1))
    assert [len(names) for names in model.loaded] == [9, 9] and "_tandem_copy_plan" not in worker.__dict__
    worker._tandem_layerwise = False
    worker.tandem_load_tensors(hf_weights(2))
    worker.tandem_load_tensors(hf_weights(3))
    assert model.loaded[-1] == ["down_t", "assigned"]
