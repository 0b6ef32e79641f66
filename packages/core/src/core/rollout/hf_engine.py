"""A rollout engine on Hugging Face transformers: batched, KV-cached, CPU or GPU.

It is the engine of the `cpu` backend and the fallback wherever vLLM is missing or fails. Returned
log-probabilities are those of the distribution the tokens were sampled from, log-softmax(logits / T)
(before top-p/top-k truncation; raw logits when greedy), so they equal the trainer's own scoring of
the same tokens at the rollout temperature.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable

import torch

from core.distributed.devices import empty_cache
from core.errors import RunDied

from core.rollout.base import RolloutOutput, SamplingParams
from core.tracking.progress import DecodeSteps


class HFRolloutEngine:
    """Holds its own copy of the model; the sharding manager keeps it in sync with the trainer."""

    def __init__(self, model: torch.nn.Module, pad_token_id: int, eos_token_ids: list[int]):
        self.model = model.eval().requires_grad_(False)
        self.pad_token_id = pad_token_id
        self.eos_token_ids = eos_token_ids
        self.device = next(model.parameters()).device  # where it generates; sleep() may move it to CPU
        self.dtype = next(model.parameters()).dtype

    @classmethod
    def from_pretrained(cls, model_dir: str, device: str, dtype: torch.dtype) -> "HFRolloutEngine":
        from transformers import AutoModelForCausalLM, GenerationConfig

        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
        gen = GenerationConfig.from_model_config(model.config)
        eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
        pad = model.config.pad_token_id if model.config.pad_token_id is not None else eos[0]
        return cls(model, pad_token_id=pad, eos_token_ids=[e for e in eos if e is not None])

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> RolloutOutput:
        input_ids, attention_mask = _left_pad(prompts, self.pad_token_id, self.device)
        stop_ids = list(dict.fromkeys([*self.eos_token_ids, *params.stop_token_ids]))
        greedy = params.temperature == 0
        forked = [] if self.device.type == "cpu" else [self.device]
        with torch.random.fork_rng(devices=forked, device_type=self.device.type), _dead_weights_named():
            if params.seed is not None:
                torch.manual_seed(params.seed)
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                do_sample=not greedy,
                temperature=None if greedy else params.temperature,
                top_p=None if greedy else params.top_p,
                top_k=None if greedy or params.top_k <= 0 else params.top_k,
                num_return_sequences=params.n,
                max_new_tokens=params.max_tokens,
                eos_token_id=stop_ids,
                pad_token_id=self.pad_token_id,
                output_logits=params.logprobs,
                return_dict_in_generate=True,
                streamer=DecodeSteps(params.max_tokens),
            )
        response_ids = out.sequences[:, input_ids.shape[1]:].cpu()  # [batch * n, generated]
        response_mask, finished = _mask_through_first_stop(response_ids, stop_ids)
        logprobs = None
        if params.logprobs:  # one step at a time, on the device: never [rows, steps, vocab] at once
            sampled = out.sequences[:, input_ids.shape[1]:]
            temperature = 1.0 if greedy else params.temperature
            logprobs = torch.stack([
                torch.log_softmax(step.float() / temperature, dim=-1).gather(-1, sampled[:, t : t + 1]).squeeze(-1)
                for t, step in enumerate(out.logits)
            ], dim=1).cpu()  # [batch * n, generated]
            logprobs = logprobs.masked_fill(~response_mask, 0.0)
        return RolloutOutput(
            prompt_ids=[p for p in prompts for _ in range(params.n)],
            response_ids=response_ids.masked_fill(~response_mask, self.pad_token_id),
            response_logprobs=logprobs,
            response_mask=response_mask,
            group_ids=torch.arange(len(prompts)).repeat_interleave(params.n),
            finished=finished,
        )

    @torch.no_grad()
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        params = dict(self.model.named_parameters())
        for name, tensor in named_tensors:
            params[name].copy_(tensor)

    def sleep(self) -> None:
        # Only an accelerator has memory worth giving back; on CPU the engine simply stays put.
        if self.device.type != "cpu":
            self.model.to("cpu")
            empty_cache(self.device)

    def wake_up(self, tags: list[str] | None = None) -> None:
        if self.device.type != "cpu":
            self.model.to(self.device)

    def close(self) -> None:
        self.model = None


@contextmanager
def _dead_weights_named():
    """Sampling from NaN/inf probabilities means the weights themselves died (a diverged update)."""
    try:
        yield
    except RuntimeError as exc:
        if "probability tensor contains" not in str(exc):
            raise
        raise RunDied("non-finite probabilities in the rollout phase: the policy's weights no longer give "
                      "finite logits (the last update diverged; lower trainer.lr or check the loss)") from None


def _left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids.to(device), mask.to(device)


def _mask_through_first_stop(ids: torch.Tensor, stop_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """True up to and including the first stop token of each row; `finished` if a row has one."""
    is_stop = torch.isin(ids, torch.tensor(stop_ids))
    stops_before = torch.cumsum(is_stop, dim=1) - is_stop.long()  # stop tokens strictly before t
    return stops_before == 0, is_stop.any(dim=1)
