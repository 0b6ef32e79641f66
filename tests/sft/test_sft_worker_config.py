"""The SFT worker reads its config, never writes it (see tests/test_worker_config.py for why)."""

from __future__ import annotations

from omegaconf import OmegaConf
from sft_fakes import tiny_run


def test_the_sft_worker_resolves_packing_without_writing_the_config(tmp_path):
    from sft.worker import SFTWorker

    cfg = tiny_run(tmp_path, "trainer.remove_padding=null")
    before = OmegaConf.to_container(cfg)
    worker = SFTWorker(cfg)
    try:
        assert OmegaConf.to_container(cfg) == before
        assert worker.trainer.packed is False  # a CPU: padded rows (packing pays only on flash kernels)
    finally:
        worker.close()
