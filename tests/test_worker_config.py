"""The workers read their config, never write it: under Ray each worker holds its own copy, so a value a
worker resolved into the config (trainer.remove_padding: null -> true) would be seen by that worker alone."""

from __future__ import annotations

from omegaconf import OmegaConf


def test_the_rl_worker_resolves_the_forward_layout_without_writing_the_config(compose_config):
    from core.workers.worker import TrainWorker

    cfg = compose_config("+backend=cpu", "trainer.remove_padding=null", "trainer.share_prompts=null")
    before = OmegaConf.to_container(cfg)
    worker = TrainWorker(cfg)
    try:
        assert OmegaConf.to_container(cfg) == before
        assert cfg.trainer.remove_padding is None and cfg.trainer.share_prompts is None
        assert worker.actor.layout == "padded"  # a CPU: padded rows (packing pays only on flash kernels)
    finally:
        worker.close()

