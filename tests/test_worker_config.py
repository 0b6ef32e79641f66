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



def test_the_backend_builds_the_engine_from_the_rollout_and_backend_groups_only(compose_config, monkeypatch):
    from core.backends.cpu import CpuBackend
    from core.rollout.base import EngineSettings
    from core.workers.worker import TrainWorker

    seen = []
    build = CpuBackend.make_rollout_engine

    def recording(self, settings, target):
        seen.append(settings)
        return build(self, settings, target)

    monkeypatch.setattr(CpuBackend, "make_rollout_engine", recording)
    worker = TrainWorker(compose_config("+backend=cpu", "rollout.max_tokens=12"))
    worker.close()
    assert isinstance(seen[0], EngineSettings) and seen[0].rollout.max_tokens == 12
    assert not hasattr(seen[0], "model")  # a backend that reads past its groups fails at once, not in a user's run
