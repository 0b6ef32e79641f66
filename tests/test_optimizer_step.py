"""core.trainer.optimizer_step: the step every trainer takes, with numbers worked out by hand."""

from __future__ import annotations

import pytest
import torch

from core.trainer.optimizer_step import optimizer_step


def one_weight(value: float, grad: float) -> tuple[torch.nn.Linear, torch.optim.SGD]:
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(value)
    model.weight.grad = torch.tensor([[grad]])
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def test_clips_steps_frees_the_gradient_and_reports_the_rate_it_used():
    model, optimizer = one_weight(1.0, grad=4.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))  # 0.1, 0.05, ...
    metrics = optimizer_step(model, optimizer, grad_clip=2.0, scheduler=scheduler)
    # norm 4 clipped to 2: w = 1 - 0.1 * 2 = 0.8; the next step's rate is 0.05
    assert metrics == {"grad_norm": 4.0, "lr": 0.1}
    assert model.weight.item() == pytest.approx(0.8, abs=1e-6)  # torch clips by 2 / (4 + 1e-6)
    assert model.weight.grad is None
    assert scheduler.get_last_lr()[0] == 0.05


def test_a_non_finite_gradient_leaves_the_weights_alone():
    model, optimizer = one_weight(1.0, grad=float("nan"))
    metrics = optimizer_step(model, optimizer, grad_clip=1.0)
    assert metrics["grad_norm"] != metrics["grad_norm"] and "lr" not in metrics  # NaN, reported; no schedule
    assert model.weight.item() == 1.0 and model.weight.grad is None
