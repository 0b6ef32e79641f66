"""The policy being trained: log-probabilities of sampled responses, and the policy-gradient update."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from core.algorithms.aggregation import aggregate_loss
from core.algorithms.entropy import logprobs_and_entropy_from_logits
from core.algorithms.kl import kl_estimate
from core.algorithms.logprobs import logprobs_from_logits
from core.algorithms.policy_loss import PolicyLossOptions, compute_policy_loss
from core.algorithms.rollout_correction import rejection_mask, rollout_correction_weights
from core.algorithms.spec import AlgorithmSpec
from core.distributed.collectives import data_parallel_size, global_loss_counts, sum_over_ranks
from core.distributed.packing import packed_response_logprobs
from core.distributed.shared_prompts import shared_prompt_logprobs
from core.trainer.batch import (AdvantageBatch, TrainingBatch, budgeted_plan, forward_tokens, in_batch_order,
                                minibatches, scatter_rows)
from core.trainer.optimizer_step import optimizer_step
from core.trainer.optimizers import make_optimizer
from core.trainer.precision import TrainingPrecision
from core.trainer.schedule import lr_scheduler
from core.trainer.token_budget import MemoryTokenBudget, out_of_memory_named, rl_sizing_hint, sized_update


def response_logprobs(model: torch.nn.Module, batch: TrainingBatch, with_entropy: bool = False,
                      temperature: float = 1.0):
    """Log-probs of the response tokens [rows, response_len] under softmax(logits / temperature)
    (and entropies if asked)."""
    response_len = batch.response_mask.shape[1]
    # logits at column t predict token t + 1: the response is predicted by columns prompt_len - 1 ..
    # seq_len - 2, the last response_len + 1 but one. Keeping only those spares the prompt's
    # [rows, prompt_len, vocab] logits (most of the step's memory for short responses).
    logits = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
        logits_to_keep=response_len + 1,
    ).logits[:, :-1]
    if with_entropy:
        return logprobs_and_entropy_from_logits(logits, batch.responses, temperature=temperature)
    return logprobs_from_logits(logits, batch.responses, temperature=temperature), None


FORWARDS = {"padded": response_logprobs, "packed": packed_response_logprobs, "shared_prompts": shared_prompt_logprobs}


def forward_layout(share_prompts: bool, packed: bool) -> str:
    """How the trainer lays a micro-batch out (`FORWARDS`): each prompt once, rows packed padding-free, or padded
    rows. The worker resolves `trainer.share_prompts` / `trainer.remove_padding` (null: what the device runs
    best, core.trainer.setup) into these two booleans."""
    if share_prompts:
        return "shared_prompts"
    return "packed" if packed else "padded"


def forward_logprobs(model: torch.nn.Module, batch: TrainingBatch, with_entropy: bool, layout: str,
                     temperature: float = 1.0):
    """Response log-probs (and entropies) by the `layout`'s forward (see `forward_layout`), under the
    sampling temperature (the distribution the rollout drew the tokens from)."""
    return FORWARDS[layout](model, batch, with_entropy, temperature)


def behaviour_logprobs_from_update(trainer_cfg, spec: AlgorithmSpec) -> bool:
    """Whether the update's own forward can supply the behaviour log-probs, sparing a forward pass.

    With one epoch of one mini-batch the policy is still the one that sampled when the update scores
    the batch, so old = new.detach() exactly (ratio 1, the same loss and gradient). A KL penalty in
    the reward needs the behaviour log-probs before the advantages, and a rollout-correction mask before
    the update's token counts, so both keep the separate pass.
    """
    return (bool(trainer_cfg.reuse_on_policy_logprobs) and trainer_cfg.ppo_epochs == 1
            and trainer_cfg.mini_batches == 1 and not spec.kl_in_reward and not spec.rejects_tokens)


@dataclass
class UpdateResult:
    metrics: dict[str, float] = field(default_factory=dict)  # means over the optimizer steps
    # on-policy updates of a batch without old_logprobs: the update's log-probs and entropies, detached
    logprobs: torch.Tensor | None = None  # [rows, response_len] in batch order
    entropy: torch.Tensor | None = None  # [rows, response_len]


def scoring_temperature(rollout_cfg) -> float:
    """The temperature the trainer scores sampled tokens at: the rollout's (greedy rollouts: 1)."""
    return float(rollout_cfg.temperature) if rollout_cfg.temperature > 0 else 1.0


class Actor:
    """The policy trainer of one data-parallel rank (the only one in-process).

    Under torch.distributed the model is FSDP-sharded and every rank runs this on its share of the
    batch: losses are normalised by the step's global counts and scaled by the DP size (FSDP
    averages gradients over ranks), so gradients equal those of the whole batch on one rank.
    """

    def __init__(self, model: torch.nn.Module, algo_cfg, trainer_cfg, spec: AlgorithmSpec, temperature: float = 1.0,
                 precision: TrainingPrecision | None = None, layout: str | None = None):
        self.model = model
        self.precision = precision or TrainingPrecision(next(model.parameters()).dtype)
        self.algo = algo_cfg
        self.spec = spec
        self.cfg = trainer_cfg
        self.horizon = spec.horizon
        self.temperature = temperature  # old, new and reference log-probs all under the sampler's softmax(z / T)
        self.loss_options = PolicyLossOptions.from_config(algo_cfg)
        trainable = [p for p in model.parameters() if p.requires_grad]  # LoRA: the adapters only
        self.optimizer = make_optimizer(trainable, trainer_cfg.get("optimizer", "adamw"), trainer_cfg.lr,
                                        trainer_cfg.weight_decay)
        # warm-up, then constant: one optimizer step per mini-batch, so the step count is not the run's
        self.scheduler = lr_scheduler(self.optimizer, trainer_cfg.warmup_steps, total_steps=0)
        # micro-batch tokens sized from free memory (a GPU, trainer.max_tokens_per_gpu: null); None: the config's
        self.token_budget = MemoryTokenBudget.for_setting(trainer_cfg.max_tokens_per_gpu, model)
        # `layout`: the worker's resolved one; a hand-made trainer config (tests) states both keys as booleans
        self.layout = layout or forward_layout(bool(trainer_cfg.get("share_prompts")), trainer_cfg.remove_padding)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _plan(self, batch: TrainingBatch):
        return budgeted_plan(batch, self.cfg, self.token_budget, padded=self.layout == "padded",
                             shared_prompts=self.layout == "shared_prompts")

    def _sizing(self) -> str:
        return rl_sizing_hint(self.token_budget, self.cfg)

    @torch.no_grad()
    def compute_logprobs(self, batch: TrainingBatch, model: torch.nn.Module | None = None, with_entropy: bool = True):
        """Log-probs and entropies (None unless `with_entropy`) under `model` (default: the policy), micro-batched."""
        model = model or self.model
        model.eval()
        plan = self._plan(batch)
        with self.precision.compute(self.device), out_of_memory_named("log-prob pass", self._sizing):
            parts = [
                forward_logprobs(model, batch.select(micro.rows).to(self.device), with_entropy, self.layout,
                                 self.temperature)
                for micro in plan
            ]
        logprobs = scatter_rows(plan, [p[0].cpu() for p in parts], batch.rows)
        return logprobs, scatter_rows(plan, [p[1].cpu() for p in parts], batch.rows) if with_entropy else None

    def update(self, batch: AdvantageBatch) -> UpdateResult:
        """ppo_epochs x mini_batches optimizer steps over the batch; mean metrics.

        An `on_policy` batch (see `behaviour_logprobs_from_update`) takes one optimizer step whose forward
        also yields the behaviour log-probs and entropies the loop logs; any other brings its `old_logprobs`.
        """
        self.model.train()
        on_policy = batch.on_policy
        if on_policy and (self.cfg.ppo_epochs, self.cfg.mini_batches) != (1, 1):
            raise ValueError("an on-policy batch needs trainer.ppo_epochs=1 and trainer.mini_batches=1")
        if not isinstance(batch, AdvantageBatch):
            raise TypeError(f"the update trains on an AdvantageBatch (core.rl.stages), not a {type(batch).__name__}")
        if on_policy != (batch.old_logprobs is None):
            raise ValueError("an on-policy batch gets its old log-probs from the update, any other brings them: "
                             f"on_policy={on_policy}, old_logprobs {'given' if on_policy else 'missing'}")
        totals: dict[str, float] = {}
        n_updates = 0
        scored = None
        with sized_update(self.token_budget, "update", self._sizing):
            for rows, mini in minibatches(batch, self.cfg.ppo_epochs, self.cfg.mini_batches):
                metrics, scored = self._optimizer_step(mini, keep_scores=on_policy)
                for key, value in metrics.items():
                    totals[key] = totals.get(key, 0.0) + value
                n_updates += 1
        result = UpdateResult({key: value / n_updates for key, value in totals.items()})
        if self.token_budget:  # what the next step's micro-batches may hold
            result.metrics["perf/micro_batch_tokens"] = float(self.token_budget.tokens)
        # what the forward computed, each prompt once when shared (a group split over two micro-batches pays its
        # prompt twice, not counted here): the MFU's T (benchmarks/grpo_step.py)
        shared = self.layout == "shared_prompts"
        result.metrics["perf/update_tokens"] = float(self.cfg.ppo_epochs * forward_tokens(batch, shared))
        if on_policy:  # the one mini-batch is the whole batch, shuffled by `rows`
            result.logprobs, result.entropy = (in_batch_order([rows], [part], batch.rows) for part in scored)
        return result

    def _optimizer_step(self, mini: AdvantageBatch, keep_scores: bool = False):
        """One optimizer step; with keep_scores also the detached log-probs and entropies in `mini`'s order."""
        algo = self.algo
        rejected = {}
        if self.spec.rejects_tokens:  # verl's rollout_rs: rejected tokens leave the mask before anything counts
            mini, rejected = _without_rejected_tokens(mini, algo)
        counts = global_loss_counts(mini.response_mask)
        agg = dict(
            mode=algo.loss_agg_mode,
            global_token_count=counts.tokens,
            global_seq_count=counts.sequences,
            horizon=self.horizon,
        )
        self.optimizer.zero_grad(set_to_none=True)
        metrics: dict[str, float] = {}
        plan = self._plan(mini)
        kept: list[tuple[torch.Tensor, torch.Tensor]] = []
        for plan_item in plan:
            micro = mini.select(plan_item.rows).to(self.device)
            need_entropy = algo.entropy_coef != 0
            with self.precision.compute(self.device):
                logprobs, entropy = forward_logprobs(
                    self.model, micro, need_entropy or keep_scores, self.layout, self.temperature
                )
            old_logprobs = logprobs.detach() if micro.on_policy else micro.old_logprobs
            if keep_scores:
                kept.append((logprobs.detach().cpu(), entropy.detach().cpu()))
            # share of this step's tokens; a dummy pass (rank padding) counts for nothing
            weight = 0.0 if plan_item.dummy else micro.response_mask.sum().item() / max(counts.tokens, 1)
            token_weights = None
            if algo.rollout_correction != "none" and not self.spec.rejects_tokens:  # TIS: weights, not a mask
                token_weights, correction = rollout_correction_weights(
                    old_logprobs, micro.rollout_logprobs, micro.response_mask, algo.rollout_correction,
                    algo.rollout_correction_cap)
                _accumulate(metrics, correction, weight)
            loss, pg_metrics = compute_policy_loss(
                algo.policy_loss,
                logprobs=logprobs,
                old_logprobs=old_logprobs,
                advantages=micro.advantages,
                response_mask=micro.response_mask,
                options=self.loss_options,
                loss_agg_mode=agg["mode"],
                global_token_count=counts.tokens,
                global_seq_count=counts.sequences,
                horizon=self.horizon,
                token_weights=token_weights,
            )
            _accumulate(metrics, {"pg_loss": loss.item() / max(weight, 1e-12), **pg_metrics}, weight)
            if self.spec.kl_in_loss:
                kl = aggregate_loss(kl_estimate(logprobs, micro.ref_logprobs, algo.kl_estimator), micro.response_mask, **agg)
                loss = loss + algo.kl_coef * kl
                _accumulate(metrics, {"kl_loss": kl.item() / max(weight, 1e-12)}, weight)
            if need_entropy:
                loss = loss - algo.entropy_coef * aggregate_loss(entropy, micro.response_mask, **agg)
            (loss * (0.0 if plan_item.dummy else data_parallel_size())).backward()
        metrics.update(rejected)
        metrics = sum_over_ranks(metrics)
        metrics.update(optimizer_step(self.model, self.optimizer, self.cfg.grad_clip, self.scheduler))
        scores = None
        if keep_scores:
            scores = tuple(scatter_rows(plan, [part[i] for part in kept], mini.rows) for i in (0, 1))
        return {f"actor/{key}": value for key, value in metrics.items()}, scores


def _without_rejected_tokens(mini: AdvantageBatch, algo) -> tuple[AdvantageBatch, dict[str, float]]:
    """`mini` with the tokens a rollout-correction mask rejects taken out of its response mask (they stay in the
    sequence, attended to, as a tool result's tokens do), and the metrics: their share, summed over ranks later
    (each rank's share of this step's tokens)."""
    kept = rejection_mask(mini.old_logprobs, mini.rollout_logprobs, mini.response_mask, algo.rollout_correction,
                          algo.rollout_correction_cap)
    counts = global_loss_counts(mini.response_mask)
    share = mini.response_mask.sum().item() / max(counts.tokens, 1)
    zeroed = (mini.response_mask.bool() & ~kept).sum().item() / max(mini.response_mask.sum().item(), 1)
    return replace(mini, response_mask=kept), {"correction_zeroed": zeroed * share, "correction_weight_mean": (1 - zeroed) * share}


def _accumulate(into: dict[str, float], values: dict[str, float], weight: float) -> None:
    for key, value in values.items():
        into[key] = into.get(key, 0.0) + float(value) * weight
