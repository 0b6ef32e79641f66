"""LoRA: merged weights for the engine, the base as reference, adapters-only checkpoints, and GRPO that learns."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from omegaconf import OmegaConf

from core.checkpoint.manager import Trainable, load_checkpoint, resolve_resume, save_checkpoint
from core.config.schema import LoraConfig
from core.models.lora import adapters_disabled, apply_lora
from core.sharding.base import iter_full_parameters

pytest.importorskip("peft")
WITH_HEAD = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]


def _lora_model(model_dir, seed=0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = apply_lora(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                       OmegaConf.structured(LoraConfig(rank=4, alpha=8, target_modules=WITH_HEAD)))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # peft starts B at 0 (no change); a trained adapter is not
            torch.nn.init.normal_(param, std=0.05)
    return model


def test_engine_weights_are_the_merged_model(tiny_model_dir):
    model = _lora_model(tiny_model_dir)
    synced = dict(iter_full_parameters(model))
    merged = copy.deepcopy(model).merge_and_unload().state_dict()
    assert synced.keys() == merged.keys()  # the base model's names: every engine loads them as a full model
    for name, tensor in synced.items():
        torch.testing.assert_close(tensor, merged[name], rtol=0, atol=1e-6, msg=name)


def test_the_reference_is_the_base_model_with_adapters_off(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = _lora_model(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ids = torch.randint(0, 256, (2, 7))
    with torch.no_grad(), adapters_disabled(model):
        torch.testing.assert_close(model(input_ids=ids).logits, base(input_ids=ids).logits)
    with torch.no_grad():  # and back on afterwards
        assert not torch.allclose(model(input_ids=ids).logits, base(input_ids=ids).logits)


def test_checkpoints_hold_the_adapters_only_and_resume_exactly(tiny_model_dir, tiny_tokenizer, tmp_path):
    def trainer():
        model = _lora_model(tiny_model_dir)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        return model, optimizer, {"actor": Trainable(model, optimizer, None)}

    def step(model, optimizer):
        ids = torch.randint(0, 256, (2, 6))
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    model, optimizer, parts = trainer()
    step(model, optimizer)
    path = save_checkpoint(tmp_path, 1, parts, {}, tiny_tokenizer, keep_last=1)
    merged_at_save = copy.deepcopy(model).merge_and_unload().state_dict()
    step(model, optimizer)
    expected = {name: p.detach().clone() for name, p in model.named_parameters()}
    from torch.distributed.checkpoint import FileSystemReader

    saved = FileSystemReader(str(path / "dcp")).read_metadata().state_dict_metadata
    model_keys = [k for k in saved if k.startswith("actor.model.")]
    assert model_keys and all("lora_" in k for k in model_keys)  # no frozen base weight in the checkpoint

    model, optimizer, parts = trainer()
    load_checkpoint(resolve_resume("auto", tmp_path), parts)
    step(model, optimizer)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param, expected[name], rtol=0, atol=0, msg=name)

    # the export rebuilds base + adapters: merged, or the adapter alone
    from transformers import AutoModelForCausalLM

    from core.checkpoint.export import export_hf

    exported = AutoModelForCausalLM.from_pretrained(export_hf(path, tmp_path / "merged")).state_dict()
    for name, tensor in merged_at_save.items():
        torch.testing.assert_close(exported[name], tensor, rtol=0, atol=1e-6, msg=name)
    assert (export_hf(path, tmp_path / "adapter", adapter_only=True) / "adapter_model.safetensors").is_file()


@pytest.mark.timeout(300)
def test_lora_grpo_learns_and_writes_the_merged_model_and_its_adapter(compose_config, tmp_path):
    from transformers import AutoModelForCausalLM

    from core.rl.loop import train

    cfg = compose_config(
        "+backend=cpu", "model.lora.rank=16", "model.lora.alpha=32", f"model.lora.target_modules=[{','.join(WITH_HEAD)}]",
        "trainer.lr=3e-2", "trainer.total_steps=100", f"trainer.output_dir={tmp_path}", "trainer.loggers=[jsonl]",
        "trainer.report=false",
    )
    summary = train(cfg)
    # measured here: 0.045 -> 0.223 (full fine-tuning of the same demo: 0.006 -> 0.45)
    assert summary["reward_end"] > summary["reward_start"] + 0.1, summary
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["actor/kl"] > 0  # the KL is to the base (adapters off), which the policy has left
    final = AutoModelForCausalLM.from_pretrained(tmp_path / "final")  # a plain HF model, merged
    assert (tmp_path / "final" / "adapter" / "adapter_config.json").is_file()
    assert not any("lora" in name for name, _ in final.named_parameters())
