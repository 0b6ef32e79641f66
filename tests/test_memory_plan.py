"""The memory plan (core.trainer.memory_plan): what must fit on one GPU, from a model's shape alone, with the
numbers derived by hand."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from core.errors import TandemError
from core.trainer.memory_plan import GIB, ModelSize, PlanSettings, check_memory_plan, fixes, model_size, plan_memory

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# 1 GiB of parameters, so that a byte per parameter reads as 1 GiB
SIZE = ModelSize(parameters=GIB, lora_per_rank=1_000_000, hidden=1024, kv_bytes_per_token=65536)


def settings(**changes) -> PlanSettings:
    base = dict(model_bytes=2, param_bytes=2, lora_rank=0, reference=True, critic=False, ranks=1, cpu_offload=False,
                engine="vllm", engine_share=0.5, engine_sleeps=True, max_model_len=16384)
    return PlanSettings(**{**base, **changes})


def test_the_7b_shape_is_sized_from_its_config_without_weights():
    size = model_size("builtin:qwen2.5-7b-shape", LORA_TARGETS)
    # per layer: q 3584^2 + bias 3584, k and v 3584 x 512 + bias 512 each, o 3584^2, the MLP 3 x 3584 x 18944,
    # 2 norms; 28 layers; embedding and (untied) head 2 x 152064 x 3584; the final norm 3584
    layer = 3584 * 3584 + 3584 + 2 * (3584 * 512 + 512) + 3584 * 3584 + 3 * 3584 * 18944 + 2 * 3584
    assert size.parameters == 28 * layer + 2 * 152064 * 3584 + 3584 == 7_615_616_512
    # LoRA per unit of rank: (in + out) of q, k, v, o, gate, up, down, 28 layers
    assert size.lora_per_rank == 28 * ((3584 + 3584) + 2 * (3584 + 512) + (3584 + 3584) + 2 * (3584 + 18944)
                                       + (18944 + 3584))
    assert size.kv_bytes_per_token == 2 * 28 * 4 * 128 * 2  # K and V, layers, kv heads, head dim, bf16


def test_full_training_in_bf16_with_a_reference_beside_a_sleeping_engine():
    plan = plan_memory(SIZE, settings(), device_gib=80.0)
    # 2 bytes a parameter: weights 2, gradients 2, Adam's two moments 4, the reference 2 (GiB)
    assert plan.states_gib == {"weights": 2.0, "gradients": 2.0, "optimizer": 4.0, "reference": 2.0, "critic": 0.0}
    assert plan.engine_share_gib == 40.0  # 0.5 of 80
    assert plan.engine_needs_gib == 2.0 + 0.0625 * 16384 / 1024  # bf16 weights + 64 KiB x 16384 tokens = 3 GiB
    # the rollout: all but the gradients (freed after each step) + 1 GiB context + the engine's 40
    assert plan.during_rollout_gib == 8.0 + 1.0 + 40.0
    assert plan.before_activations_gib == 10.0 + 1.0  # the engine sleeps
    assert plan.left_for_activations_gib == 69.0 and plan.problems() == []


def test_fp32_masters_lora_sharding_and_offload():
    # master weights: 4 bytes each for weights, gradients and 2 moments, and the reference copy: 4+4+8+4 = 20
    assert sum(plan_memory(SIZE, settings(param_bytes=4), 80.0).states_gib.values()) == 20.0
    # LoRA rank 8: base 2 GiB in bf16, 8M fp32 adapters with their gradient and 2 moments, no reference
    lora = plan_memory(SIZE, settings(lora_rank=8, reference=False), 80.0).states_gib
    assert lora["weights"] == pytest.approx(2.0 + 8e6 * 4 / GIB) and lora["optimizer"] == pytest.approx(8e6 * 8 / GIB)
    # FSDP over 4 GPUs: a quarter each (fp32 masters when sharded); offloaded: nothing stays on the GPU
    assert sum(plan_memory(SIZE, settings(param_bytes=4, ranks=4), 80.0).states_gib.values()) == 5.0
    assert sum(plan_memory(SIZE, settings(param_bytes=4, ranks=4, cpu_offload=True), 80.0).states_gib.values()) == 0
    # PPO's critic: weights, gradients and 2 moments of (parameters + the value head's hidden) at 2 bytes
    critic = plan_memory(SIZE, settings(critic=True), 80.0).states_gib["critic"]
    assert critic == pytest.approx(4 * (GIB + 1024) * 2 / GIB)


def test_what_cannot_fit_is_named_with_the_closest_fit():
    # 24 GiB: resident 8 + 1 context beside an engine share of 12 fits; the update 11 fits
    assert plan_memory(SIZE, settings(), 24.0).problems() == []
    # a share of 0.9 (21.6 GiB) beside 9 GiB does not: the share the rest leaves is floor((24 - 9) / 24) = 0.62
    tight = settings(engine_share=0.9)
    assert "during the rollout" in plan_memory(SIZE, tight, 24.0).problems()[0]
    assert fixes(SIZE, tight, 24.0)[0] == "rollout.gpu_memory_utilization=0.62"
    # a share below the engine's needs (3 GiB of 24 = 0.125): raised to ceil(3.3 / 24) = 0.14
    small = settings(engine_share=0.05)
    assert "less than its weights" in plan_memory(SIZE, small, 24.0).problems()[0]
    assert fixes(SIZE, small, 24.0)[0] == "rollout.gpu_memory_utilization=0.14"
    # fp32 masters (20 GiB of states) cannot fit 16 GiB at any share. bf16 weights rounded stochastically can (10 GiB:
    # 8 resident + 1 beside a share of floor((16 - 9) / 16) = 0.43; the update's 11 fits), and LoRA as asked
    assert fixes(SIZE, settings(param_bytes=4), 16.0) == [
        "trainer.master_weights=false trainer.optimizer=adamw_bf16_sr rollout.gpu_memory_utilization=0.43",
        "model.lora.rank=64"]


def test_a_run_that_cannot_fit_is_refused_before_loading(compose_config, monkeypatch):
    from core.algorithms.spec import AlgorithmSpec

    cfg = compose_config("+backend=cpu", "model=qwen2_5_7b", "backend.engine=vllm", "trainer.master_weights=true")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=80 * GIB))
    spec = AlgorithmSpec.from_config(cfg.algorithm, cfg.rollout.max_tokens)
    with pytest.raises(TandemError, match=r"qwen2.5-7b-shape cannot be trained on this 80 GiB GPU.*closest fit: "
                                          r"trainer.master_weights=false trainer.optimizer=adamw_bf16_sr"):
        check_memory_plan(cfg, spec, torch.device("cuda"), ranks=1)
    assert check_memory_plan(cfg, spec, torch.device("cpu"), ranks=1) is None  # a CPU run is not planned


def test_the_doctor_prints_the_plan_and_the_fix(capsys):
    from core.doctor import main

    main(["--plan", "--gpu-gib", "80", "+backend=cpu", "model=qwen2_5_7b", "backend.engine=vllm"])
    out = capsys.readouterr().out
    assert "7.62B parameters" in out and "trainer optimizer" in out
    assert "fits with: rollout.gpu_memory_utilization=0.27, or model.lora.rank=64" in out


def test_cpu_offload_on_one_rank_is_refused(compose_config):
    from core.workers.worker import TrainWorker

    with pytest.raises(TandemError, match="trainer.cpu_offload=true offloads FSDP's shards, and this run has one rank"):
        TrainWorker(compose_config("+backend=cpu", "trainer.cpu_offload=true"))


def test_the_doctors_plan_names_a_bad_option_in_one_line(capsys):
    from core.doctor import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--plan", "+backend=cpu", "model=qwen9"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "tandem: error: --plan +backend=cpu model=qwen9: In 'config': Could not find 'model/qwen9'")


def test_a_model_the_plan_cannot_size_is_trained_unplanned(compose_config, monkeypatch, caplog):
    import core.trainer.memory_plan as memory_plan

    def unsizable(path, targets):
        raise NotImplementedError("this architecture cannot be built on the meta device")

    monkeypatch.setattr(memory_plan, "model_size", unsizable)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=80 * GIB))
    cfg = compose_config("+backend=cpu")
    assert check_memory_plan(cfg, None, torch.device("cuda"), ranks=1) is None
    assert "memory plan skipped: builtin:tiny-qwen2 cannot be sized" in caplog.text
