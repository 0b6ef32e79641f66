"""The trainers' optimizers (core.trainer.optimizers): bf16 weights with stochastic rounding keep the small steps
that plain bf16 AdamW rounds away, refuse weights of another dtype, and resume exactly."""

from __future__ import annotations

import pytest
import torch

from core.errors import TandemError
from core.trainer.optimizers import make_optimizer

pytest.importorskip("torchao", reason="trainer.optimizer=adamw_bf16_sr needs torchao (tandem-core[lowmem])")


def one_step(name: str, seed: int = 0):
    """One AdamW step at lr 1e-5 on a 256x256 bf16 weight of 0.75, where bf16's spacing (in [0.5, 1)) is
    2^-8 = 0.0039: Adam's first step moves each weight by lr against its gradient's sign, 0.26% of a spacing,
    so round-to-nearest keeps every weight and stochastic rounding moves ~0.26% of them a whole spacing."""
    torch.manual_seed(seed)
    weight = torch.nn.Parameter(torch.full((256, 256), 0.75, dtype=torch.bfloat16))
    optimizer = make_optimizer([weight], name, lr=1e-5)
    weight.grad = torch.randn(256, 256).to(torch.bfloat16)
    before = weight.detach().clone()
    optimizer.step()
    return before, weight.detach(), weight.grad


def test_stochastic_rounding_keeps_the_steps_round_to_nearest_loses():
    before, after, _ = one_step("adamw")
    assert torch.equal(before, after)  # every update rounded away
    before, after, grad = one_step("adamw_bf16_sr")
    moved = after != before
    assert 0.001 < moved.float().mean().item() < 0.006  # ~0.26% of 65,536 weights: ~170
    # each moved weight went one spacing against its gradient
    assert torch.all(torch.sign(after - before)[moved].float() == -torch.sign(grad[moved]).float())
    assert torch.all((after - before).abs()[moved].float() == 2 ** -8)


def test_fp32_weights_are_refused_with_the_settings_that_fit():
    with pytest.raises(TandemError, match="rounds bf16 weights, and these are float32: set model.dtype=bfloat16"):
        make_optimizer([torch.nn.Parameter(torch.zeros(2))], "adamw_bf16_sr", lr=1e-5)


RESUME = """
import sys, torch
from core.trainer.optimizers import make_optimizer
mode, ckpt, out = sys.argv[1:]
torch.manual_seed(0)
grads = [torch.randn(64, 64).to(torch.bfloat16) for _ in range(2)]
if mode == "straight":
    weight = torch.nn.Parameter(torch.randn(64, 64).to(torch.bfloat16))
    optimizer = make_optimizer([weight], "adamw_bf16_sr", lr=1e-3)
    weight.grad = grads[0]
    optimizer.step()
    torch.save((weight.detach().clone(), optimizer.state_dict(), torch.get_rng_state()), ckpt)
else:  # a new process, as after a kill: the weights, the optimizer and the RNG from the checkpoint
    saved, state, rng = torch.load(ckpt)
    weight = torch.nn.Parameter(saved.clone())
    optimizer = make_optimizer([weight], "adamw_bf16_sr", lr=1e-3)
    optimizer.load_state_dict(state)
    torch.set_rng_state(rng)
weight.grad = grads[1]
optimizer.step()
torch.save(weight.detach(), out)
"""


def test_a_resumed_optimizer_takes_the_same_random_rounding(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for mode in ("straight", "resumed"):  # each process compiles the update anew, as a resumed run does
        subprocess.run([sys.executable, "-c", RESUME, mode, str(tmp_path / "ckpt.pt"), str(tmp_path / f"{mode}.pt")],
                       check=True, env=env, capture_output=True, timeout=240)
    assert torch.equal(torch.load(tmp_path / "straight.pt"), torch.load(tmp_path / "resumed.pt"))
