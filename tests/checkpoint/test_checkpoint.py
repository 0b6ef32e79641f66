"""Checkpoints: exact round trip, keep-last-K, interrupted writes ignored, HF export reloads."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from core.checkpoint.export import export_hf
from core.checkpoint.manager import Trainable, list_checkpoints, load_checkpoint, resolve_resume, save_checkpoint
from core.errors import TandemError


def _trainer(model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    return model, optimizer, scheduler


def _parts(model, optimizer, scheduler):
    return {"actor": Trainable(model, optimizer, scheduler)}


def _train_step(model, optimizer, scheduler):
    ids = torch.randint(0, 300, (2, 6))  # draws from the RNG, so a resume must restore it
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def test_resume_continues_exactly(tiny_model_dir, tiny_tokenizer, tmp_path):
    torch.manual_seed(0)
    model, optimizer, scheduler = _trainer(tiny_model_dir)
    _train_step(model, optimizer, scheduler)
    save_checkpoint(tmp_path, 1, _parts(model, optimizer, scheduler), {"drawn": 16}, tiny_tokenizer, keep_last=2)
    _train_step(model, optimizer, scheduler)
    expected = {name: p.detach().clone() for name, p in model.named_parameters()}

    model, optimizer, scheduler = _trainer(tiny_model_dir)
    state = load_checkpoint(resolve_resume("auto", tmp_path), _parts(model, optimizer, scheduler))
    assert state == {"step": 1, "trainer": {"drawn": 16}}
    _train_step(model, optimizer, scheduler)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param, expected[name], rtol=0, atol=0, msg=name)


def test_keep_last_and_interrupted_write(tiny_model_dir, tiny_tokenizer, tmp_path):
    model, optimizer, scheduler = _trainer(tiny_model_dir)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, _parts(model, optimizer, scheduler), {}, tiny_tokenizer, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["global_step_2", "global_step_3"]
    # a save killed mid-write: a temp dir, and a final-looking dir without its state file
    (tmp_path / ".tmp-global_step_4" / "dcp").mkdir(parents=True)
    (tmp_path / "global_step_5" / "dcp").mkdir(parents=True)
    assert resolve_resume("auto", tmp_path).name == "global_step_3"
    assert resolve_resume("never", tmp_path) is None
    with pytest.raises(TandemError, match="trainer.resume"):
        resolve_resume(str(tmp_path / "global_step_5"), tmp_path)
    save_checkpoint(tmp_path, 4, _parts(model, optimizer, scheduler), {}, tiny_tokenizer, keep_last=2)
    assert not (tmp_path / ".tmp-global_step_4").exists()


def test_hf_export_reloads_with_same_logits(tiny_model_dir, tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model, optimizer, scheduler = _trainer(tiny_model_dir)
    _train_step(model, optimizer, scheduler)
    save_checkpoint(tmp_path / "ckpt", 1, _parts(model, optimizer, scheduler), {}, tiny_tokenizer, keep_last=1)
    subprocess.run(
        [sys.executable, "-m", "core.checkpoint.export", str(tmp_path / "ckpt"), str(tmp_path / "hf")],
        check=True, capture_output=True, timeout=120,
    )
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    ids = torch.randint(0, 300, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=0)
    assert AutoTokenizer.from_pretrained(tmp_path / "hf")("ab=").input_ids == tiny_tokenizer("ab=").input_ids
    assert export_hf(tmp_path / "ckpt" / "global_step_1", tmp_path / "hf2", "bfloat16").is_dir()


class _Exploit:
    """A pickle payload that would create a file when unpickled (a crafted trainer_state.pt)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_crafted_trainer_state_is_refused_not_executed(tiny_model_dir, tiny_tokenizer, tmp_path):
    from core.checkpoint.manager import STATE_FILE

    model, optimizer, scheduler = _trainer(tiny_model_dir)
    saved = save_checkpoint(tmp_path / "ck", 1, _parts(model, optimizer, scheduler), {"drawn": 1}, tiny_tokenizer, keep_last=2)
    marker = tmp_path / "pwned"
    torch.save({"step": 1, "trainer": _Exploit(marker)}, saved / STATE_FILE)
    with pytest.raises(TandemError, match="holds more than tensors and plain values"):
        load_checkpoint(saved, _parts(*_trainer(tiny_model_dir)))
    assert not marker.exists()


def test_pruning_renames_before_deleting_and_leftovers_are_swept(tiny_model_dir, tiny_tokenizer, tmp_path):
    model, optimizer, scheduler = _trainer(tiny_model_dir)
    parts = _parts(model, optimizer, scheduler)
    (tmp_path / ".tmp-deleting-global_step_0").mkdir(parents=True)  # a prune that crashed mid-delete
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, parts, {}, tiny_tokenizer, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["global_step_2", "global_step_3"]


def test_final_model_is_replaced_whole_or_not_at_all(tiny_model_dir, tmp_path):
    from core.models.cache import write_dir_atomically

    final = tmp_path / "final"
    write_dir_atomically(final, lambda d: (d / "model.safetensors").write_text("v1"), replace=True)

    def disk_full(staging):
        (staging / "model.safetensors").write_text("v2 partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_dir_atomically(final, disk_full, replace=True)
    assert (final / "model.safetensors").read_text() == "v1"  # the previous good state is intact
    assert [p.name for p in tmp_path.iterdir()] == ["final"]  # no staging left behind
    write_dir_atomically(final, lambda d: (d / "model.safetensors").write_text("v2"), replace=True)
    assert (final / "model.safetensors").read_text() == "v2"
