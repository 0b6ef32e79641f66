"""Weight sync as plain copies: where each HF-named tensor lands in vLLM's model, learnt from one load.

vLLM's `model.load_weights` maps HF names onto its own (fused) parameters through per-model Python
loaders: q/k/v land in slices of `qkv_proj`, gate/up in `gate_up_proj`, an embedding in the first rows of
a padded one. That mapping never changes for a running engine, yet every sync pays for walking it again
(~0.1 ms a tensor). The first load is watched instead: every `Tensor.copy_` whose source is one of the
given tensors records its destination view. A name whose every copy went, unchanged, into the model's
own parameters (checked after the load: the views hold exactly the source) is planned; each later sync
then copies it straight into those views, all planned tensors in one `torch._foreach_copy_`. Anything
else (a loader that transforms, a name that never reached a parameter, a tied head the loader skips)
keeps going through `load_weights`, so the plan only ever makes a sync faster, never different.
Engines whose loading repacks weights (layerwise reload: CPU GEMMs, quantization) use no plan at all.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch

NamedTensors = list[tuple[str, torch.Tensor]]


def _key(tensor: torch.Tensor) -> tuple:
    return tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype


@contextmanager
def _watching_copies(on_copy: Callable[[torch.Tensor, torch.Tensor], None]) -> Iterator[None]:
    original = torch.Tensor.copy_

    def copy_(dst, src, non_blocking=False):
        out = original(dst, src, non_blocking)
        on_copy(dst, src)
        return out

    torch.Tensor.copy_ = copy_
    try:
        yield
    finally:
        torch.Tensor.copy_ = original


class CopyPlan:
    """HF name -> the views of vLLM's parameters its tensor is copied into; built as syncs go."""

    def __init__(self) -> None:
        self.views: dict[str, list[torch.Tensor]] = {}  # planned names
        self.unplanned: set[str] = set()  # seen and left to load_weights for good

    def load(self, model: torch.nn.Module, weights: NamedTensors) -> int:
        """Load `weights` into `model`: planned names by direct copies, the rest through `load_weights`
        (watched, so that they are planned from then on where they can be). Returns the planned count."""
        planned = [(name, tensor) for name, tensor in weights if self._fits(name, tensor)]
        if planned:
            destinations = [view for name, _ in planned for view in self.views[name]]
            sources = [tensor for name, tensor in planned for _ in self.views[name]]
            if all(src.device == dst.device for src, dst in zip(sources, destinations)):
                torch._foreach_copy_(destinations, sources)  # one launch for the lot
            else:  # e.g. a CPU-offloaded trainer: copies across devices, one by one
                for dst, src in zip(destinations, sources):
                    dst.copy_(src)
        done = {name for name, _ in planned}
        rest = [(name, tensor) for name, tensor in weights if name not in done]
        new = [(name, tensor) for name, tensor in rest if name not in self.unplanned]
        if new:
            self._load_and_learn(model, rest, new)
        elif rest:
            model.load_weights(weights=rest)
        return len(planned)

    def _fits(self, name: str, tensor: torch.Tensor) -> bool:
        views = self.views.get(name)
        if views is None:
            return False
        if any(view.shape != tensor.shape for view in views):  # a different tensor under an old name
            del self.views[name]
            return False
        return True

    def _load_and_learn(self, model: torch.nn.Module, rest: NamedTensors, new: NamedTensors) -> None:
        by_key: dict[tuple, str | None] = {}
        for name, tensor in new:  # two names on one tensor (a tied head) cannot be told apart
            by_key[_key(tensor)] = None if _key(tensor) in by_key else name
        spans = [(t.data_ptr(), t.data_ptr() + t.numel() * t.element_size(), name) for name, t in new]
        recorded: dict[str, list[torch.Tensor]] = {}
        transformed: set[str] = set()

        def on_copy(dst: torch.Tensor, src: torch.Tensor) -> None:
            name = by_key.get(_key(src))
            if name is not None:
                recorded.setdefault(name, []).append(dst)
                return
            start = src.data_ptr()  # part of a source, or reshaped: not a copy the plan could replay
            transformed.update(name for first, end, name in spans if first <= start < end)

        with _watching_copies(on_copy):
            model.load_weights(weights=rest)
        owned = {p.untyped_storage().data_ptr() for p in [*model.parameters(), *model.buffers()]}
        for name, tensor in new:
            views = recorded.get(name)
            if views and name not in transformed and all(
                v.untyped_storage().data_ptr() in owned and torch.equal(v, tensor.to(v.device, v.dtype)) for v in views
            ):
                self.views[name] = views
            else:
                self.unplanned.add(name)
