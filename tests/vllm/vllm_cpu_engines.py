"""Helpers of the vLLM tests (a module name no other test folder uses, so test modules import it by name)."""

from __future__ import annotations


def start_cpu_engine(model_dir: str, multiprocess: bool = False, **engine_args):
    """A started `VllmRolloutEngine` on vLLM's CPU build: eager, seeded, with our weight-sync extension."""
    from core.rollout.vllm_args import WORKER_EXTENSION
    from core.rollout.vllm_engine import VllmRolloutEngine, build_llm

    args = {**dict(model=model_dir, dtype="bfloat16", max_model_len=256, enforce_eager=True, seed=0,
                   worker_extension_cls=WORKER_EXTENSION), **engine_args}
    return VllmRolloutEngine(build_llm(args, multiprocess=multiprocess), multiprocess=multiprocess)
