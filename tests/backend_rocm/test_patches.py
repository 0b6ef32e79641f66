"""The vLLM 0.7 patches: gated per version, idempotent, and doing what the notes ask on fake modules.

The fake modules hold the vLLM 0.7.2 code the notes quote (trimmed to what matters), compiled from
a real file so `inspect.getsource` finds it, like the installed vLLM's.
"""

from __future__ import annotations

import sys
import textwrap
import types

import pytest

import core.patches
from backend_rocm import patches
from backend_rocm.source_patch import rewrite_function
from core.patches import apply_patches

PARALLEL_STATE = '''
import torch

def initialize_model_parallel(tensor_model_parallel_size=1, pipeline_model_parallel_size=1, backend=None):
    world_size = torch.distributed.get_world_size()
    if (world_size
            != tensor_model_parallel_size * pipeline_model_parallel_size):
        raise RuntimeError(
            f"world_size ({world_size}) is not equal to "
            f"tensor_model_parallel_size ({tensor_model_parallel_size}) x "
            f"pipeline_model_parallel_size ({pipeline_model_parallel_size})")
    return world_size // tensor_model_parallel_size  # tensor-parallel groups
'''

UNIPROC_EXECUTOR = '''
import os

class ExecutorWithExternalLauncher:
    def _init_executor(self) -> None:
        rank = int(os.environ["RANK"])
        local_rank = rank
        self.kwargs = dict(local_rank=local_rank, rank=rank)
'''

WEIGHT_UTILS = '''
import torch

def pt_weights_iterator(hf_weights_files):
    for bin_file in hf_weights_files:
        state = torch.load(bin_file)
        yield from state.items()
        del state
        torch.cuda.empty_cache()
'''

MODULES = {
    "vllm.distributed.parallel_state": PARALLEL_STATE,
    "vllm.executor.uniproc_executor": UNIPROC_EXECUTOR,
    "vllm.model_executor.model_loader.weight_utils": WEIGHT_UTILS,
}


class FakeTorch:
    """The bits of torch the fake vLLM code touches, counting empty_cache() calls."""

    def __init__(self, world_size: int):
        self.empty_cache_calls = 0
        self.distributed = types.SimpleNamespace(get_world_size=lambda: world_size)
        self.cuda = types.SimpleNamespace(empty_cache=self._empty_cache)

    def _empty_cache(self):
        self.empty_cache_calls += 1

    @staticmethod
    def load(name):
        return {f"{name}.weight": 1}


@pytest.fixture
def fake_vllm_07(monkeypatch, tmp_path):
    """Install the fake 0.7.2 modules under vLLM's names; returns them and their fake torch."""
    monkeypatch.setattr(core.patches, "_APPLIED", {})
    fake_torch = FakeTorch(world_size=4)
    modules = {}
    for name, source in MODULES.items():
        path = tmp_path / (name.replace(".", "_") + ".py")
        path.write_text(textwrap.dedent(source))
        module = types.ModuleType(name)
        exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
        module.torch = fake_torch
        monkeypatch.setitem(sys.modules, name, module)
        modules[name.rsplit(".", 1)[1]] = module
    return types.SimpleNamespace(torch=fake_torch, **modules)


@pytest.mark.parametrize("version, needed", [
    ("0.6.6.post1", False), ("0.7.0", True), ("0.7.2", True), ("0.7.2+rocm624", True),
    ("0.7.3", False), ("0.8.4.dev0", False), ("0.11.1+rocm700", False),
])
def test_patches_apply_only_to_vllm_without_the_fix(version, needed):
    outcomes = [core.patches.needed(patch, lambda dist: version) for patch in patches.PATCHES]
    assert [o.reason for o in outcomes] == (["needed"] if needed else [f"not needed for vllm {version}"]) * 3


def test_unpatched_072_shows_the_three_bugs(fake_vllm_07, monkeypatch):
    monkeypatch.setenv("RANK", "9")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(RuntimeError, match=r"world_size \(4\) is not equal"):
        fake_vllm_07.parallel_state.initialize_model_parallel(2, 1)
    executor = fake_vllm_07.uniproc_executor.ExecutorWithExternalLauncher()
    executor._init_executor()
    assert executor.kwargs["local_rank"] == 9
    list(fake_vllm_07.weight_utils.pt_weights_iterator(["a", "b"]))
    assert fake_vllm_07.torch.empty_cache_calls == 2


def test_patched_072_behaves_as_072_upstream_fix(fake_vllm_07, monkeypatch):
    monkeypatch.setenv("RANK", "9")
    monkeypatch.setenv("LOCAL_RANK", "1")
    outcomes = apply_patches(patches.PATCHES, lambda dist: "0.7.2")
    assert [o.reason for o in outcomes] == ["applied"] * 3
    # world of 4 = tp 2 x dp 2: two tensor-parallel groups instead of an error
    assert fake_vllm_07.parallel_state.initialize_model_parallel(2, 1) == 2
    executor = fake_vllm_07.uniproc_executor.ExecutorWithExternalLauncher()
    executor._init_executor()
    assert executor.kwargs == {"local_rank": 1, "rank": 9}
    # the generator still yields every weight, without emptying the cache
    assert list(fake_vllm_07.weight_utils.pt_weights_iterator(["a", "b"])) == [("a.weight", 1), ("b.weight", 1)]
    assert fake_vllm_07.torch.empty_cache_calls == 0


def test_patches_are_idempotent(fake_vllm_07):
    apply_patches(patches.PATCHES, lambda dist: "0.7.2")
    code = fake_vllm_07.parallel_state.initialize_model_parallel.__code__
    assert [o.reason for o in apply_patches(patches.PATCHES, lambda dist: "0.7.2")] == ["already applied"] * 3
    # even called directly, a rewrite already recorded on the function is not made again
    patches.allow_larger_world_size()
    assert fake_vllm_07.parallel_state.initialize_model_parallel.__code__ is code


def test_source_with_the_fix_is_left_alone(tmp_path):
    path = tmp_path / "weight_utils_073.py"
    path.write_text(textwrap.dedent(WEIGHT_UTILS).replace("        torch.cuda.empty_cache()\n", ""))
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    fixed = namespace["pt_weights_iterator"]
    code = fixed.__code__
    assert not rewrite_function(fixed, patches.DropEmptyCache(), "keep_cache_while_loading")
    assert fixed.__code__ is code


def test_functions_with_closures_are_refused():
    def outer():
        captured = 1

        def inner():
            return captured

        return inner

    with pytest.raises(RuntimeError, match="free variables"):
        rewrite_function(outer(), patches.DropEmptyCache(), "closure")


def test_vllm_plugin_does_nothing_off_rocm(torch_build, fake_vllm_07):
    from backend_rocm.vllm_plugin import register

    torch_build("cuda")
    register()
    assert core.patches.applied_patches() == {}


def test_doctor_lists_the_patches(fake_vllm):
    from core.doctor import report

    fake_vllm(None)
    rows = dict(report("rocm"))
    assert rows["selected backend"].startswith("rocm cannot run here: ")  # a CPU machine; its patches still show
    for patch in patches.PATCHES:
        assert rows[f"patch {patch.name}"] == f"vllm not installed - {patch.why}"
