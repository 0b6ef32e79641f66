"""Tandem SFT: supervised fine-tuning that validates by generating with the RL rollout engine.

    python -m sft.main                          # the embedded CPU demo (reverse letters, ~1 minute)
    python -m sft.main trainer.launcher=ray trainer.n_gpus_per_node=8 +backend=cuda model=qwen2_5_0_5b ...
    torchrun --nproc_per_node 8 -m sft.main +backend=cuda ...   # the same run, one loop per rank

Modules, in the order a run uses them: config (schemas) -> dataset / chat / synthetic (chat data,
assistant-only loss masks) -> batching / loss / trainer (token-budget micro-batches, FSDP2 via
core.distributed, packed forward with trainer.remove_padding) -> engine / validation (the backend's
rollout engine, weights pushed through its sharding manager, work split over ranks, HF fallback) ->
worker (one rank's state, driven through core's in-process or Ray worker groups) -> loop / main.
"""
