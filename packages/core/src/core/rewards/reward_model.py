"""A learned reward model: an HF sequence classifier with one output, scoring prompt + response.

The scorer re-tokenises the decoded conversation with the reward model's own tokenizer, so the
policy and the reward model may use different vocabularies (as OpenRLHF does). It runs wherever
it is built: in the training workers, on their device, between rollout and update.
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from core.errors import TandemError
from core.rewards.base import RewardInput
from core.rewards.scoring import RewardBatch


class RewardModelScorer:
    """Scores RewardInputs with `model` (num_labels=1); the score is the logit at the last token."""

    def __init__(self, model: PreTrainedModel, tokenizer, batch_size: int = 8, max_length: int = 4096):
        if model.config.num_labels != 1:
            raise TandemError(f"reward model must have num_labels=1 (one score), it has {model.config.num_labels}")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        tokenizer.truncation_side = "left"  # an over-long conversation keeps its response
        # HF sequence classifiers find each row's last real token through config.pad_token_id.
        model.config.pad_token_id = tokenizer.pad_token_id
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length

    @classmethod
    def from_pretrained(cls, path: str, device: str | torch.device = "cpu", dtype=torch.float32, **kwargs):
        try:
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(path)
        except OSError as exc:
            raise TandemError(f"cannot load reward model '{path}': {exc}") from exc
        return cls(model.to(device), tokenizer, **kwargs)

    @torch.no_grad()
    def score(self, samples: Sequence[RewardInput]) -> RewardBatch:
        texts = [sample.prompt + sample.response for sample in samples]
        device = next(self.model.parameters()).device
        scores = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(device)
            scores.append(self.model(**batch).logits[:, 0].float().cpu())
        return RewardBatch(torch.cat(scores) if scores else torch.zeros(0), errors=0)

    def close(self) -> None:
        self.model = None
