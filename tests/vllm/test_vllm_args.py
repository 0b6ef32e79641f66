"""vLLM engine arguments from the composed config: core's layer, plugin layers, the user's layer (no vLLM needed)."""

from __future__ import annotations

import json

import pytest

from core.errors import TandemError
from core.plugins.manager import load_backend
from core.rollout.base import EngineTarget
from core.rollout.vllm_args import WORKER_EXTENSION, engine_args_from_config


def args_for(cfg, backend, model_dir="/m"):
    return engine_args_from_config(cfg, EngineTarget.from_config(cfg, model_dir), backend)


@pytest.fixture
def cuda_args(compose_config):
    """cuda_args(*overrides) -> the LLM kwargs for +backend=cuda."""
    return lambda *overrides: args_for(compose_config("+backend=cuda", *overrides), load_backend("cuda"))


@pytest.fixture
def rocm_args(compose_config, monkeypatch, tmp_path):
    """rocm_args(*overrides) -> the LLM kwargs for +backend=rocm, on a vLLM 0.11.1 build that can sleep."""
    import core.patches
    from backend_rocm import sleep_mode
    from backend_rocm.probe import SleepSupport

    monkeypatch.setattr(core.patches, "vllm_version", lambda: "0.11.1+rocm700")
    monkeypatch.setattr(sleep_mode, "sleep_support", lambda verify_cycle: SleepSupport(True, "faked"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    return lambda *overrides: args_for(compose_config("+backend=rocm", *overrides), load_backend("rocm"), str(tmp_path))


def test_cuda_defaults_follow_the_rollout_config(compose_config):
    cfg = compose_config("+backend=cuda")
    args = args_for(cfg, load_backend("cuda"))
    max_model_len = cfg.data.max_prompt_length + cfg.rollout.max_tokens  # rollout.max_model_len unset
    assert args == dict(
        model="/m", load_format="dummy", dtype="bfloat16", seed=0, gpu_memory_utilization=0.5,
        max_model_len=max_model_len, max_num_seqs=256, max_num_batched_tokens=8192, enable_chunked_prefill=True,
        enable_prefix_caching=True, enforce_eager=False, tensor_parallel_size=1,
        worker_extension_cls=WORKER_EXTENSION, enable_sleep_mode=True,
    )


def test_cuda_rollout_overrides_reach_the_engine(cuda_args):
    args = cuda_args("rollout.gpu_memory_utilization=0.3", "rollout.max_num_seqs=64", "rollout.enable_chunked_prefill=false",
                     "rollout.enable_prefix_caching=false", "rollout.max_model_len=20000", "trainer.seed=5",
                     "rollout.free_cache_engine=false")
    assert args["gpu_memory_utilization"] == 0.3 and args["max_num_seqs"] == 64 and args["seed"] == 5
    assert not args["enable_chunked_prefill"] and not args["enable_prefix_caching"]
    assert args["max_model_len"] == 20000
    assert args["max_num_batched_tokens"] == 20000  # a whole sequence must fit one step
    assert args["enable_sleep_mode"] is False  # no sleeping asked for: no cumem allocator either


def test_capture_sizes_go_into_compilation_config_unless_eager(cuda_args):
    assert cuda_args("rollout.cudagraph_capture_sizes=[8,1,4]")["compilation_config"] == {
        "cudagraph_capture_sizes": [1, 4, 8]}
    eager = cuda_args("rollout.cudagraph_capture_sizes=[8,1,4]", "rollout.enforce_eager=true")
    assert eager["enforce_eager"] is True and "compilation_config" not in eager


def test_user_engine_args_win_and_compilation_config_merges_key_by_key(cuda_args):
    args = cuda_args("rollout.cudagraph_capture_sizes=[2,1]", "+backend.engine_args.max_num_seqs=7",
                     "+backend.engine_args.enable_sleep_mode=false", "+backend.compilation_config.mode=0")
    assert args["max_num_seqs"] == 7 and args["enable_sleep_mode"] is False  # beats core and the cuda hook
    assert args["compilation_config"] == {"cudagraph_capture_sizes": [1, 2], "mode": 0}


def test_rocm_core_layer_then_rocm_hook_then_user(rocm_args):
    args = rocm_args("+backend.compilation_config.mode=0", "+backend.engine_args.max_num_seqs=9")
    assert args["load_format"] == "dummy" and args["enable_chunked_prefill"] and args["enable_prefix_caching"]
    assert args["enable_sleep_mode"] is True  # the build can sleep and free_cache_engine is on
    assert args["max_num_seqs"] == 9
    # the hook's capture sizes survive the user's compilation_config, merged key by key
    assert args["compilation_config"] == {"cudagraph_capture_sizes": [1, 2, 4, 8, 16, 32, 64], "mode": 0}


def test_backend_contribution_sits_between_core_and_the_user(compose_config):
    from backend_cuda.backend import CudaBackend

    class Tuned(CudaBackend):
        def vllm_engine_args(self, cfg, engine_args):
            assert engine_args["max_num_seqs"] == 256  # it sees core's args
            return {"max_num_seqs": 2, "swap_space": 2, "compilation_config": {"mode": 3}}

    cfg = compose_config("+backend=cuda", "rollout.cudagraph_capture_sizes=[1,8]")
    args = args_for(cfg, Tuned())
    assert args["max_num_seqs"] == 2 and args["swap_space"] == 2  # the backend beats core
    assert args["compilation_config"] == {"cudagraph_capture_sizes": [1, 8], "mode": 3}  # merged key by key
    user = compose_config("+backend=cuda", "+backend.engine_args.max_num_seqs=5")
    assert args_for(user, Tuned())["max_num_seqs"] == 5  # and the user beats both


def test_cpu_backend_runs_vllm_eagerly_with_a_bounded_kv_cache(compose_config):
    from core.backends.cpu import CPU_KV_CACHE_BYTES

    args = args_for(compose_config("+backend=cpu", "backend.engine=vllm"), load_backend("cpu"))
    assert args["enforce_eager"] is True and args["kv_cache_memory_bytes"] == CPU_KV_CACHE_BYTES
    assert "enable_sleep_mode" not in args  # vLLM's default (off): the CPU build cannot sleep


def test_the_caller_s_target_sizes_and_seeds_the_engine_not_the_rl_data_keys(compose_config):
    # SFT passes its own prompt length and seed: max_model_len = 10 + rollout.max_tokens, whatever data.* says
    cfg = compose_config("+backend=cuda", "rollout.max_tokens=6")
    args = engine_args_from_config(cfg, EngineTarget("/sft", max_prompt_length=10, seed=7), load_backend("cuda"))
    assert (args["model"], args["max_model_len"], args["seed"]) == ("/sft", 16, 7)


def test_a_kv_pool_of_n_tokens_is_n_times_the_model_s_kv_bytes_per_token(compose_config, tmp_path):
    # 24 layers x 2 (K, V) x 2 KV heads x head_dim 896 / 14 = 64 x 2 bytes = 12,288 bytes a token (Qwen2.5-0.5B)
    (tmp_path / "config.json").write_text(json.dumps(
        {"num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "hidden_size": 896}))
    cfg = compose_config("+backend=cuda", "rollout.kv_cache_tokens=1000")
    assert args_for(cfg, load_backend("cuda"), str(tmp_path))["kv_cache_memory_bytes"] == 1000 * 12_288
    fill_the_share = compose_config("+backend=cuda", "rollout.kv_cache_tokens=0")
    assert "kv_cache_memory_bytes" not in args_for(fill_the_share, load_backend("cuda"), str(tmp_path))


def test_a_kv_pool_without_the_model_s_config_names_the_key(compose_config, tmp_path):
    with pytest.raises(TandemError, match="rollout.kv_cache_tokens needs the model's config.json"):
        args_for(compose_config("+backend=cuda", "rollout.kv_cache_tokens=8"), load_backend("cuda"), str(tmp_path))


def test_on_a_gpu_the_kv_pool_defaults_to_what_vllm_can_run_at_once(compose_config, tmp_path, monkeypatch):
    # Qwen2.5-0.5B: 12,288 KV bytes a token (above). max_num_seqs 256 x max_model_len (256 + 256) = 131,072
    # tokens = 1.61e9 bytes, under half of a 141 GB H200's 0.5 share (35e9): the pool is exactly that
    (tmp_path / "config.json").write_text(json.dumps(
        {"num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "hidden_size": 896}))
    monkeypatch.setattr("core.distributed.devices.accelerator_memory_bytes", lambda: 141 * 10**9)
    gpu = ("+backend=cuda", "data.max_prompt_length=256", "rollout.max_tokens=256")
    assert args_for(compose_config(*gpu), load_backend("cuda"), str(tmp_path))["kv_cache_memory_bytes"] == 131_072 * 12_288
    # 0: vLLM fills its share as before; an explicit number wins
    assert "kv_cache_memory_bytes" not in args_for(compose_config(*gpu, "rollout.kv_cache_tokens=0"), load_backend("cuda"),
                                                   str(tmp_path))
    # max_model_len 32k: 256 x 32,768 x 12,288 = 103 GB, more than half the share: vLLM sizes it
    long = compose_config(*gpu, "rollout.max_model_len=32768")
    assert "kv_cache_memory_bytes" not in args_for(long, load_backend("cuda"), str(tmp_path))


def test_without_an_accelerator_there_is_no_automatic_pool(compose_config, tmp_path, monkeypatch):
    monkeypatch.setattr("core.distributed.devices.accelerator_memory_bytes", lambda: None)
    (tmp_path / "config.json").write_text(json.dumps(
        {"num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "hidden_size": 128}))
    assert "kv_cache_memory_bytes" not in args_for(compose_config("+backend=cuda"), load_backend("cuda"), str(tmp_path))


@pytest.mark.parametrize("overrides, culprit", [
    (["data.max_prompt_length=500", "rollout.max_tokens=64"],
     r"data.max_prompt_length \(500\) \+ rollout.max_tokens \(64\) = 564 tokens is longer than the model's context \(512"),
    (["rollout.max_model_len=1024"], r"rollout.max_model_len=1024 is longer than the model's context \(512"),
])
def test_sequences_longer_than_the_model_s_positions_are_named_before_vllm_starts(compose_config, tmp_path, overrides,
                                                                                     culprit):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 512}))
    with pytest.raises(TandemError, match=culprit):
        args_for(compose_config("+backend=cuda", *overrides), load_backend("cuda"), str(tmp_path))
    assert args_for(compose_config("+backend=cuda", "data.max_prompt_length=448", "rollout.max_tokens=64"),
                    load_backend("cuda"), str(tmp_path))["max_model_len"] == 512  # exactly the context: fine
    # positions extended by rope scaling are vLLM's to judge
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 512,
                                                      "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}))
    assert args_for(compose_config("+backend=cuda", *overrides), load_backend("cuda"), str(tmp_path))
