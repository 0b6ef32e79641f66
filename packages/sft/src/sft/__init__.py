"""Tandem SFT: supervised fine-tuning that validates by generating with the RL rollout engine.

    python -m sft.main                          # the embedded CPU demo (reverse letters, ~1 minute)
    torchrun --nproc_per_node 8 -m sft.main +backend=cuda model=qwen2_5_0_5b data.task=file ...

Modules, in the order a run uses them: config (schemas) -> dataset / chat / synthetic (chat data,
assistant-only loss masks) -> batching / loss / trainer (token-budget micro-batches, FSDP2 via
core.distributed) -> engine / validation (the backend's rollout engine, weights pushed through its
sharding manager, work split over ranks, HF fallback) -> loop / main.
"""
