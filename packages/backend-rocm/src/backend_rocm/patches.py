"""Version-gated vLLM patches of the ROCm backend (applied through `core.patches`).

AMD's tuning notes build on verl's vLLM 0.7 notes, which ask users of stable vLLM <= 0.7.2 to edit
three files in site-packages by hand before co-locating vLLM with an FSDP trainer (upstream issue
vllm-project/vllm#12782; fixed upstream in vLLM 0.7.3). Each patch below makes that edit on the
installed function, only for 0.7.0 <= vLLM < 0.7.3 (0.7.0 introduced the external-launcher
executor these edits concern; 0.7.3 has them), and is a no-op on source that already has the fix.
ROCm builds of vLLM carry a local version ("0.7.2+rocm624"), which the gate compares as 0.7.2.
"""

from __future__ import annotations

import ast
import importlib

from packaging.version import Version

from backend_rocm.source_patch import Rewrite, rewrite_function
from core.backends.base import VersionedPatch

FIRST_AFFECTED = Version("0.7.0")
FIXED_IN = Version("0.7.3")


def affected_by_0_7_bugs(version: str) -> bool:
    return FIRST_AFFECTED <= Version(version) < FIXED_IN


class DropWorldSizeCheck(Rewrite):
    """Delete `if world_size != tensor_model_parallel_size * pipeline_model_parallel_size: raise`."""

    def visit_If(self, node: ast.If):
        test = node.test
        if (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "world_size"
                and isinstance(test.ops[0], ast.NotEq) and any(isinstance(s, ast.Raise) for s in node.body)):
            self.changed = True
            return None
        return self.generic_visit(node)


class LocalRankFromEnv(Rewrite):
    """Turn `local_rank = rank` into `local_rank = int(os.environ["LOCAL_RANK"])`."""

    def visit_Assign(self, node: ast.Assign):
        if ([ast.dump(t) for t in node.targets] == [ast.dump(ast.Name("local_rank", ast.Store()))]
                and isinstance(node.value, ast.Name) and node.value.id == "rank"):
            self.changed = True
            return ast.copy_location(ast.parse('local_rank = int(os.environ["LOCAL_RANK"])').body[0], node)
        return node


class DropEmptyCache(Rewrite):
    """Delete the statement `torch.cuda.empty_cache()`."""

    def visit_Expr(self, node: ast.Expr):
        if ast.unparse(node.value) == "torch.cuda.empty_cache()":
            self.changed = True
            return None
        return node


def allow_larger_world_size() -> None:
    """Drop the world-size assertion in `vllm.distributed.parallel_state.initialize_model_parallel`.

    Why: co-located with an FSDP trainer, vLLM's world is the trainer's (tp * pp * dp ranks), but
    vLLM <= 0.7.2 insists world_size == tp * pp and raises (vllm-project/vllm#12782; vLLM 0.7.3
    builds groups from the data-parallel layout instead).
    """
    module = importlib.import_module("vllm.distributed.parallel_state")
    rewrite_function(module.initialize_model_parallel, DropWorldSizeCheck(), "allow_larger_world_size")


def local_rank_from_env() -> None:
    """Take `local_rank` from LOCAL_RANK in vLLM's external-launcher (uniproc) executor.

    Why: vLLM 0.7.0-0.7.2 set `local_rank = rank` (the global rank), so on a second node every
    worker picks a GPU index past the node's GPUs (vllm-project/vllm#12782; fixed in vLLM 0.7.3).
    """
    module = importlib.import_module("vllm.executor.uniproc_executor")
    rewrite_function(module.ExecutorWithExternalLauncher._init_executor, LocalRankFromEnv(), "local_rank_from_env")


def keep_cache_while_loading() -> None:
    """Remove `torch.cuda.empty_cache()` from vLLM's `pt_weights_iterator`.

    Why: verl's vLLM 0.7 notes ask for its removal when vLLM shares the GPUs with a trainer (an
    `empty_cache()` per checkpoint shard synchronises the device and returns cached blocks the
    co-located processes then re-allocate); vLLM 0.7.3's iterator ends at `del state` without it.
    """
    module = importlib.import_module("vllm.model_executor.model_loader.weight_utils")
    rewrite_function(module.pt_weights_iterator, DropEmptyCache(), "keep_cache_while_loading")


PATCHES: list[VersionedPatch] = [
    VersionedPatch(
        name="vllm07-world-size-assertion",
        why="vLLM 0.7.0-0.7.2 refuse world_size != tp*pp when co-located (vllm#12782, fixed in 0.7.3)",
        target="vllm", applies_to=affected_by_0_7_bugs, apply=allow_larger_world_size,
    ),
    VersionedPatch(
        name="vllm07-local-rank-from-env",
        why="vLLM 0.7.0-0.7.2 external launcher uses the global rank as local_rank (vllm#12782, fixed in 0.7.3)",
        target="vllm", applies_to=affected_by_0_7_bugs, apply=local_rank_from_env,
    ),
    VersionedPatch(
        name="vllm07-no-empty-cache-in-pt-loader",
        why="vLLM 0.7.0-0.7.2 pt_weights_iterator empties the CUDA cache per shard (gone in 0.7.3)",
        target="vllm", applies_to=affected_by_0_7_bugs, apply=keep_cache_while_loading,
    ),
]
