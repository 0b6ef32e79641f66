"""What every kind of worker shares (RL's TrainWorker, SFT's SFTWorker): checkpoints of its trained
parts and the HF export of its policy, on one rank or gathered from FSDP shards.

A worker is a plain class built as `Worker(cfg, *args)` on every rank; worker groups (in-process or
Ray) name it by import path, "package.module:Class", so a Ray actor can build it on its own node.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from core.checkpoint.manager import Trainable, load_checkpoint, save_checkpoint
from core.distributed.collectives import is_distributed
from core.errors import TandemError
from core.models.cache import write_dir_atomically
from core.models.lora import full_tensor, is_lora
from core.sharding.base import iter_full_parameters


class ModelWorker:
    """Subclasses set `cfg`, `policy` (the trained model, FSDP-sharded under torch.distributed) and
    `tokenizer`, and name their trained parts in `_parts()` ("actor" is the policy's)."""

    cfg: Any
    policy: torch.nn.Module
    tokenizer: Any

    def _parts(self) -> dict[str, Trainable]:
        raise NotImplementedError

    def save_checkpoint(self, root: str, step: int, trainer_state: dict[str, Any]) -> str:
        keep = self.cfg.trainer.keep_last
        return str(save_checkpoint(Path(root), step, self._parts(), trainer_state, self.tokenizer, keep))

    def load_checkpoint(self, path: str) -> dict[str, Any]:
        return load_checkpoint(Path(path), self._parts())

    def save_model(self, out_dir: str) -> None:
        """The policy as an HF directory (safetensors + tokenizer), gathered to rank 0 under FSDP.

        Written beside `out_dir` and renamed into place, so `final/` is whole or absent, never half
        written (a previous `final/` is replaced only once the new one is complete). A LoRA policy is
        written merged (a plain HF model, what `model.path=<run>/final` needs), its adapter beside it in
        `adapter/` (peft's format)."""
        if is_lora(self.policy):
            self._save_lora_model(Path(out_dir))
            return
        full = None
        if is_distributed():
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            full = get_model_state_dict(self.policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            if torch.distributed.get_rank() != 0:
                return
        write_dir_atomically(Path(out_dir), replace=True, write=lambda staging: (
            self.policy.save_pretrained(staging, state_dict=full, safe_serialization=True),
            self.tokenizer.save_pretrained(staging),
        ))

    def _save_lora_model(self, out_dir: Path) -> None:
        from peft import get_peft_model_state_dict

        # gathered on every rank (collectives under FSDP), written by rank 0
        merged = {name: tensor.cpu() for name, tensor in iter_full_parameters(self.policy)}
        adapter = {name: full_tensor(t).cpu() for name, t in get_peft_model_state_dict(
            self.policy, save_embedding_layers=False).items()}
        if is_distributed() and torch.distributed.get_rank() != 0:
            return
        write_dir_atomically(out_dir, replace=True, write=lambda staging: (
            self.policy.get_base_model().save_pretrained(staging, state_dict=merged, safe_serialization=True),
            self.policy.save_pretrained(staging / "adapter", state_dict=adapter, safe_serialization=True,
                                        save_embedding_layers=False),  # the base has them
            self.tokenizer.save_pretrained(staging),
        ))


def import_worker(path: str) -> type:
    """The worker class named "package.module:Class"."""
    module_name, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise TandemError(f"worker class {path!r} cannot be imported ({exc}); name it as 'package.module:Class'") from None
