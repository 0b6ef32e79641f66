"""The PPO critic: the policy's backbone with a scalar value head, trained on clipped value loss."""

from __future__ import annotations

import torch

from core.algorithms.value import value_loss
from core.distributed.collectives import data_parallel_size, global_loss_counts
from core.trainer.batch import AdvantageBatch, TrainingBatch, budgeted_plan, minibatches, scatter_rows
from core.trainer.optimizer_step import optimizer_step
from core.trainer.optimizers import make_optimizer
from core.trainer.precision import TrainingPrecision
from core.trainer.token_budget import MemoryTokenBudget, rl_sizing_hint, sized_update


class Critic:
    """Data-parallel like the Actor (global counts, loss x DP size); its forward is always padded."""

    def __init__(self, model: torch.nn.Module, algo_cfg, trainer_cfg, max_response_len: int,
                 precision: TrainingPrecision | None = None):
        self.model = model
        self.precision = precision or TrainingPrecision(next(model.parameters()).dtype)
        self.algo = algo_cfg
        self.cfg = trainer_cfg
        self.horizon = max_response_len
        self.optimizer = make_optimizer(model.parameters(), trainer_cfg.get("optimizer", "adamw"), algo_cfg.critic_lr)
        # micro-batch tokens sized from free memory, as the Actor's (a GPU, trainer.max_tokens_per_gpu: null)
        self.token_budget = MemoryTokenBudget.for_setting(trainer_cfg.max_tokens_per_gpu, model)

    @classmethod
    def from_pretrained(cls, model_dir: str, precision: TrainingPrecision, device, algo_cfg, trainer_cfg,
                        max_response_len: int, wrap=None):
        """`wrap` (e.g. FSDP sharding) is applied to the model before the optimizer sees its parameters."""
        from transformers import AutoModelForTokenClassification

        model = AutoModelForTokenClassification.from_pretrained(model_dir, num_labels=1, dtype=precision.param_dtype)
        model = model.to(device)
        return cls(wrap(model) if wrap else model, algo_cfg, trainer_cfg, max_response_len, precision)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _values(self, batch: TrainingBatch) -> torch.Tensor:
        """V(state before each response token): [rows, response_len]."""
        with self.precision.compute(self.device):
            out = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
        response_len = batch.response_mask.shape[1]
        return out.logits[:, batch.prompt_len - 1 : batch.prompt_len - 1 + response_len, 0].float()

    @torch.no_grad()
    def compute_values(self, batch: TrainingBatch) -> torch.Tensor:
        self.model.eval()
        plan = budgeted_plan(batch, self.cfg, self.token_budget, padded=True)
        parts = [self._values(batch.select(micro.rows).to(self.device)).cpu() for micro in plan]
        return scatter_rows(plan, parts, batch.rows) * batch.response_mask

    def update(self, batch: AdvantageBatch) -> dict[str, float]:
        self.model.train()
        losses, clip_fracs, grad_norms, steps = [], [], [], 0
        with sized_update(self.token_budget, "critic's update", lambda: rl_sizing_hint(self.token_budget, self.cfg)):
            for _, mini in minibatches(batch, self.cfg.ppo_epochs, self.cfg.mini_batches):
                counts = global_loss_counts(mini.response_mask)
                self.optimizer.zero_grad(set_to_none=True)
                for plan_item in budgeted_plan(mini, self.cfg, self.token_budget, padded=True):
                    micro = mini.select(plan_item.rows).to(self.device)
                    loss, metrics = value_loss(
                        self._values(micro), micro.values, micro.returns, micro.response_mask,
                        value_clip=self.algo.value_clip, loss_agg_mode=self.algo.loss_agg_mode,
                        global_token_count=counts.tokens, global_seq_count=counts.sequences, horizon=self.horizon,
                    )
                    (loss * (0.0 if plan_item.dummy else data_parallel_size())).backward()
                    losses.append(0.0 if plan_item.dummy else loss.item())
                    clip_fracs.append(metrics.get("vf_clip_frac", 0.0))
                grad_norms.append(optimizer_step(self.model, self.optimizer, self.cfg.grad_clip)["grad_norm"])
                steps += 1
        return {"critic/vf_loss": sum(losses) / max(steps, 1), "critic/vf_clip_frac": sum(clip_fracs) / max(len(clip_fracs), 1),
                "critic/grad_norm": sum(grad_norms) / max(steps, 1)}
