"""An always-on check that the engine holds the weights just sent: a few tensors' fingerprints, taken on the
trainer's side as they stream past and read back from the engine's own memory after it is awake again.

Peers have shipped the silent version of this bug: an engine that kept serving old weights after sleep/wake,
so the policy trained on samples of a model it no longer was. `rollout.check_weight_sync` compares log-probs
(a debug option: a forward pass on both sides); this costs a few small reductions and one RPC per step.

The fingerprint of a tensor is the float64 sum of a strided sample of its rows (at most SAMPLED_ROWS), in the
engine's dtype: exactly the values the sync copies, so the two sides agree to float64 rounding (the sums may
run in another order), while a stale tensor differs by at least one bf16 step of some element.
"""

from __future__ import annotations

import torch

SAMPLED_ROWS = 16
EVERY = 64  # fingerprint the first tensor of the stream and every 64th after it (~5 of a 0.5B model's 290)
RELATIVE_TOLERANCE = 1e-9  # of the sampled values' absolute sum: float64 rounding only


def fingerprint(tensor: torch.Tensor) -> tuple[float, float]:
    """(sum, sum of magnitudes) of a strided sample of `tensor`'s rows, in float64."""
    return tuple(_sums(tensor).tolist())


def _sums(tensor: torch.Tensor) -> torch.Tensor:
    """[2] float64 on `tensor`'s device: read back only when compared, so streaming never waits on the GPU."""
    rows = tensor.reshape(tensor.shape[0], -1) if tensor.dim() > 1 else tensor.reshape(-1, 1)
    sample = rows[:: max(1, rows.shape[0] // SAMPLED_ROWS)].double()
    return torch.stack([sample.sum(), sample.abs().sum()])


def same(engine: tuple[float, float], trainer: tuple[float, float]) -> bool:
    return abs(engine[0] - trainer[0]) <= RELATIVE_TOLERANCE * max(trainer[1], engine[1]) + 1e-12


class FingerprintTap:
    """Wraps the stream of (name, tensor) the sync sends: fingerprints every EVERY-th tensor as it passes."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self._taken: dict[str, torch.Tensor] = {}

    def __call__(self, named_tensors):
        self._taken = {}
        for index, (name, tensor) in enumerate(named_tensors):
            if index % EVERY == 0:
                self._taken[name] = _sums(tensor.detach().to(self.dtype))
            yield name, tensor

    @property
    def taken(self) -> dict[str, tuple[float, float]]:
        """Name -> fingerprint of the tensors fingerprinted in the last stream."""
        return {name: tuple(sums.tolist()) for name, sums in self._taken.items()}
