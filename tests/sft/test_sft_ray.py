"""The Ray launcher runs SFT: 2 CPU actors (gloo, FSDP2) train, split validation and gather it in dataset
order, checkpoint and export; a later in-process run resumes from that checkpoint (resharded 2 -> 1)."""

from __future__ import annotations

import json

import pytest

from sft.dataset import load_data
from sft.loop import train
from sft_fakes import tiny_run

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local 2-CPU Ray for this module, or the one another test folder already started."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        yield ray
        return
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp_path_factory.mktemp("ray")),
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}}, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_two_ray_workers_train_validate_in_order_checkpoint_and_export(ray_cluster, tmp_path, tiny_tokenizer):
    run = ("data.num_val=5", "trainer.batch_size=8", "trainer.save_freq=2", "trainer.save_model=true",
           "trainer.remove_padding=true")
    summary = train(tiny_run(tmp_path, "trainer.launcher=ray", "trainer.n_gpus_per_node=2", *run))
    assert summary["steps"] == 4 and summary["validations"] == 3  # steps 0, 2, 4
    records = [json.loads(line) for line in (tmp_path / "validation" / "step_000004.jsonl").read_text().splitlines()]
    # 5 prompts: actor 0 generates the first 3, actor 1 the last 2; the file keeps dataset order
    assert [r["rank"] for r in records] == [0, 0, 0, 1, 1]
    _, val_set = load_data(tiny_run(tmp_path, *run), tiny_tokenizer)
    assert [r["prompt"] for r in records] == [e.prompt_text for e in val_set]
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "train/loss" in m] == [1, 2, 3, 4]
    assert (tmp_path / "checkpoints" / "global_step_4" / "trainer_state.pt").is_file()
    assert (tmp_path / "final" / "model.safetensors").is_file()  # shards gathered into one HF directory

    resumed = train(tiny_run(tmp_path, "trainer.total_steps=5", "validation.val_freq=0", "trainer.resume=auto", *run))
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps[-2:] == [5, 5] and 4 not in steps[len(metrics):]  # only step 5 (train + validation) ran
    assert resumed["validations"] == 1
