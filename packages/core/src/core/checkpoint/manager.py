"""Sharded, atomic training checkpoints: write every `save_freq` steps, keep the last K, resume.

Layout of one checkpoint, `<root>/global_step_<N>/`:
    dcp/                  every trained part's model + optimizer ("actor", and "critic" for PPO),
                          sharded by torch.distributed.checkpoint (each rank writes its own shards;
                          loading reshards to any world size)
    trainer_state.pt      step, LR schedulers, the loop's own state (prompt-source position...)
    rng_rank<R>.pt        every rank's RNG states (torch, CUDA, python, numpy)
    hf/                   the actor's config + tokenizer, so `core.checkpoint.export` can write an HF directory

Atomicity: everything goes to `<root>/.tmp-global_step_<N>` first and rank 0 renames it when all
ranks are done; a crash mid-write leaves only a `.tmp-` directory, which resume ignores and the
next save removes. With several nodes, `<root>` must be a shared filesystem.
"""

from __future__ import annotations

import errno
import os
import pickle
import random
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from core.models.lora import ADAPTER, is_lora

from core.distributed.collectives import is_distributed, world
from core.distributed.devices import default_accelerator, device_module
from core.errors import TandemError

STEP_PREFIX = "global_step_"
TMP_PREFIX = ".tmp-"
STATE_FILE = "trainer_state.pt"


@dataclass
class Trainable:
    """One trained part of the checkpoint: its (possibly FSDP-sharded) model and optimizer state."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None


def checkpoint_step(path: Path) -> Optional[int]:
    """N for a complete `global_step_N` directory, else None."""
    name = path.name
    if not name.startswith(STEP_PREFIX) or not name[len(STEP_PREFIX):].isdigit():
        return None
    return int(name[len(STEP_PREFIX):]) if (path / STATE_FILE).is_file() else None


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(checkpoint_step(p), p) for p in root.iterdir() if p.is_dir()]
    return [path for step, path in sorted((s, p) for s, p in found if s is not None)]


def resolve_resume(resume: str, root: Path) -> Optional[Path]:
    """The checkpoint to start from: `never` -> None, `auto` -> the latest under root (or None), else a path."""
    if resume == "never":
        return None
    if resume == "auto":
        found = list_checkpoints(root)
        return found[-1] if found else None
    return find_checkpoint(Path(resume).expanduser(), "trainer.resume (never, auto, or a path)")


def find_checkpoint(path: Path, what: str) -> Path:
    """`path` if it is a complete checkpoint, else the latest one under it (a checkpoints root)."""
    if checkpoint_step(path) is not None:
        return path
    latest = list_checkpoints(path)
    if not latest:
        raise TandemError(
            f"{what}: '{path}' is not a complete checkpoint directory ({STEP_PREFIX}N containing {STATE_FILE}) "
            "and holds none"
        )
    return latest[-1]


def save_checkpoint(
    root: Path, step: int, parts: dict[str, Trainable], trainer_state: dict[str, Any], tokenizer, keep_last: int
) -> Path:
    """Write checkpoint `step` under `root` atomically (call on every rank); returns its final path.

    `parts` must hold "actor", whose config and `tokenizer` go to hf/ for the HF export.
    """
    root = Path(root)
    rank = world()[0]
    final = root / f"{STEP_PREFIX}{step}"
    tmp = root / f"{TMP_PREFIX}{final.name}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(f"{TMP_PREFIX}*"):  # a crashed save
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    _barrier()
    with _removed_on_failure(tmp, rank, final):
        with single_process_quiet():
            dcp.save(_sharded_states(parts), checkpoint_id=tmp / "dcp", no_dist=not is_distributed())
        torch.save(_rng_state(), tmp / f"rng_rank{rank}.pt")
        if rank == 0:
            parts["actor"].model.config.save_pretrained(tmp / "hf")
            if is_lora(parts["actor"].model):  # the export rebuilds base + adapters: peft's config names the base
                parts["actor"].model.peft_config[ADAPTER].save_pretrained(tmp / "hf" / "adapter")
            tokenizer.save_pretrained(tmp / "hf")
            schedulers = {name: part.scheduler.state_dict() for name, part in parts.items() if part.scheduler}
            torch.save({"step": step, "schedulers": schedulers, "trainer": trainer_state}, tmp / STATE_FILE)
    _barrier()
    if rank == 0:
        if final.exists():  # saving a step again after resuming from an older checkpoint
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(root)[:-keep_last] if keep_last > 0 else []:
            # renamed first, so a crash mid-delete leaves a stale .tmp- folder (swept at the next save),
            # never a half-deleted global_step_N that looks complete
            trash = root / f"{TMP_PREFIX}deleting-{old.name}"
            os.replace(old, trash)
            shutil.rmtree(trash, ignore_errors=True)
    _barrier()
    return final


# how a full disk surfaces through torch's zip writer and DCP, which wrap the OSError in their own errors
DISK_FULL_SIGNS = ("No space left", "unexpected pos", "Disk quota exceeded")


@contextmanager
def _removed_on_failure(tmp: Path, rank: int, final: Path):
    """A write that fails leaves no `.tmp-` directory behind; a full disk is one line naming the checkpoint."""
    try:
        yield
    except BaseException as exc:
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        # DCP's CheckpointException is a BaseException; a signal (KeyboardInterrupt, SystemExit) passes through
        if not isinstance(exc, (KeyboardInterrupt, SystemExit)) and _disk_full(exc):
            raise TandemError(f"no space left on the device writing checkpoint {final}; nothing of it was kept, the "
                              "previous checkpoints are intact: free some space and resume") from None
        raise


def _disk_full(exc: BaseException | None, depth: int = 0) -> bool:
    """Whether `exc` comes from a full disk: an ENOSPC/EDQUOT OSError, or torch's zip writer's symptom of one,
    possibly under a cause, a context, or DCP's per-rank `failures` (a CheckpointException)."""
    if exc is None or depth > 10:
        return False
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if any(sign in str(exc) for sign in DISK_FULL_SIGNS):
        return True
    wrapped = [failure[0] for failure in getattr(exc, "failures", {}).values() if isinstance(failure, tuple)]
    return any(_disk_full(inner, depth + 1) for inner in [exc.__cause__ or exc.__context__, *wrapped])


def load_checkpoint(path: Path, parts: dict[str, Trainable]) -> dict[str, Any]:
    """Restore every part and this rank's RNG in place (call on every rank); returns {"step", "trainer"}."""
    path = find_checkpoint(Path(path), "checkpoint")
    states = _sharded_states(parts)
    with single_process_quiet():
        dcp.load(states, checkpoint_id=path / "dcp", no_dist=not is_distributed())
    for name, part in parts.items():
        set_state_dict(
            part.model, part.optimizer,
            model_state_dict=states[name]["model"], optim_state_dict=states[name]["optim"],
            options=_state_options(part.model),
        )
    state = _load_plain(path / STATE_FILE)
    for name, part in parts.items():
        if part.scheduler:
            part.scheduler.load_state_dict(state["schedulers"][name])
    rng_file = path / f"rng_rank{world()[0]}.pt"
    _set_rng_state(_load_plain(rng_file if rng_file.is_file() else path / "rng_rank0.pt"))
    return {"step": state["step"], "trainer": state["trainer"]}


def _sharded_states(parts: dict[str, Trainable]) -> dict[str, dict]:
    """{part: {"model": ..., "optim": ...}} in DCP's sharded form (DTensors under FSDP)."""
    states = {}
    for name, part in parts.items():
        # a LoRA policy's frozen base is the model it started from: the checkpoint holds the adapters
        model_state, optim_state = get_state_dict(part.model, part.optimizer, options=_state_options(part.model))
        states[name] = {"model": model_state, "optim": optim_state}
    return states


def _state_options(model: torch.nn.Module) -> StateDictOptions:
    """Frozen parameters (a LoRA policy's base) are neither saved nor expected back."""
    frozen = any(not p.requires_grad for p in model.parameters())
    return StateDictOptions(ignore_frozen_params=frozen, strict=not frozen)


def _load_plain(path: Path) -> Any:
    """torch.load of tensors and plain Python types only: a crafted file cannot run code on load."""
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise TandemError(f"{path} holds more than tensors and plain values; refusing to load it ({exc})") from None


def _rng_state() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    accelerator = device_module(default_accelerator())  # None on a CPU-only machine
    return {
        "torch": torch.get_rng_state(),
        "accelerator": accelerator.get_rng_state_all() if accelerator else None,
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached_gauss)),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    accelerator = device_module(default_accelerator())
    if state.get("accelerator") is not None and accelerator:
        accelerator.set_rng_state_all(state["accelerator"])
    random.setstate(state["python"])
    kind, keys, position, has_gauss, cached_gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gauss))


@contextmanager
def single_process_quiet():
    """DCP warns that it 'assumes a single process' even when told so; that is the in-process launcher."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _barrier() -> None:
    if is_distributed():
        dist.barrier()
