"""The Ray launcher: 2 CPU workers (gloo, FSDP2) run the demo loop; a failing worker is one clear error."""

from __future__ import annotations

import json

import pytest

from core.rl.loop import train

pytestmark = pytest.mark.timeout(240)

RAY_DEMO = ("+backend=cpu", "trainer.launcher=ray", "trainer.n_gpus_per_node=2", "trainer.total_steps=3",
            "data.prompt_batch_size=4", "rollout.n=4", "trainer.loggers=[jsonl]", "trainer.report=false",
            "trainer.max_tokens_per_gpu=40", "trainer.remove_padding=true", "trainer.save_freq=2")


def test_ray_two_workers_run_the_demo(ray_cluster, compose_config, tmp_path):
    cfg = compose_config(*RAY_DEMO, f"trainer.output_dir={tmp_path}")
    summary = train(cfg)
    assert summary["steps"] == 3
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3]
    assert all(m["actor/grad_norm"] > 0 for m in lines)
    assert (tmp_path / "checkpoints" / "global_step_2" / "trainer_state.pt").is_file()
    assert (tmp_path / "final" / "model.safetensors").is_file()


def test_lora_on_two_fsdp_workers(ray_cluster, compose_config, tmp_path):
    pytest.importorskip("peft")
    cfg = compose_config(*RAY_DEMO, "model.lora.rank=8", f"trainer.output_dir={tmp_path}")
    assert train(cfg)["steps"] == 3
    # adapters on sharded layers: checkpoint (adapters only), merged final model and its adapter
    assert (tmp_path / "checkpoints" / "global_step_2" / "hf" / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "final" / "model.safetensors").is_file()
    assert (tmp_path / "final" / "adapter" / "adapter_model.safetensors").is_file()


def test_worker_failure_is_one_error_with_its_traceback(ray_cluster, compose_config, tmp_path):
    from core.workers.ray_group import RayWorkerGroup, WorkerFailure

    group = RayWorkerGroup(compose_config(*RAY_DEMO, f"trainer.output_dir={tmp_path}"))
    with pytest.raises(WorkerFailure, match=r"(?s)worker rank \d of 2 failed.*no_such_method"):
        group.run_all("no_such_method")
    assert group.actors == []  # the group was torn down, nobody waits in a collective


def test_a_user_error_inside_a_worker_stays_one_clear_line(ray_cluster, compose_config, tmp_path):
    from core.errors import TandemError
    from core.workers.ray_group import RayWorkerGroup

    group = RayWorkerGroup(compose_config(*RAY_DEMO, f"trainer.output_dir={tmp_path}"))
    with pytest.raises(TandemError, match=r"worker rank \d: checkpoint: '.*nothing' is not a complete checkpoint"):
        group.run_all("load_checkpoint", str(tmp_path / "nothing"))
    assert group.actors == []
