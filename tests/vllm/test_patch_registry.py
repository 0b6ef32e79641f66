"""The version-gated patch registry (core.patches) with fake versions, and what `doctor` says about it."""

from __future__ import annotations

import pytest

import core.patches
from core.doctor import report
from core.backends.base import VersionedPatch
from core.patches import PatchOutcome, applied_patches, apply_patches
from core.plugins.manager import load_backend


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    monkeypatch.setattr(core.patches, "_APPLIED", {})  # nothing applied yet in this test


def counting_patch(name: str, target: str = "vllm", below: tuple[int, int] = (0, 27)):
    """A patch for `target` versions below `below`; `calls` counts how often it really ran."""
    calls = []

    def applies_to(version: str) -> bool:
        return tuple(int(part) for part in version.split(".")[:2]) < below

    patch = VersionedPatch(name, f"{name}: fixed upstream in {below}", target, applies_to, lambda: calls.append(name))
    return patch, calls


def test_applies_only_to_versions_that_need_it():
    old, old_calls = counting_patch("old-bug")
    new, new_calls = counting_patch("new-bug", below=(0, 30))
    outcomes = apply_patches([old, new], version_of=lambda dist: "0.28.0")
    assert old_calls == [] and new_calls == ["new-bug"]
    assert [(o.name, o.applied, o.reason) for o in outcomes] == [
        ("old-bug", False, "not needed for vllm 0.28.0"), ("new-bug", True, "applied")]
    assert applied_patches() == {"new-bug": "0.28.0"}  # recorded with the version it was applied for


def test_applying_twice_is_a_no_op():
    patch, calls = counting_patch("bug")
    apply_patches([patch], version_of=lambda dist: "0.26.1")
    second = apply_patches([patch], version_of=lambda dist: "0.26.1")
    assert calls == ["bug"]
    assert second == [PatchOutcome("bug", "vllm", "0.26.1", True, "already applied", patch.why)]


def test_missing_target_is_skipped_and_said():
    patch, calls = counting_patch("bug")
    (outcome,) = apply_patches([patch], version_of=lambda dist: None)
    assert calls == [] and not outcome.applied and outcome.reason == "vllm not installed"
    assert applied_patches() == {}


@pytest.fixture
def listed_patches(monkeypatch):
    """listed_patches(*patches): the cpu backend lists `patches`, for one test."""
    from core.backends.cpu import CpuBackend

    listed = []
    monkeypatch.setattr(CpuBackend, "patches", lambda self: list(listed))
    return listed.extend


def test_a_backends_patches_are_listed_by_doctor_and_applied_once(listed_patches):
    # pluggy's real version gates these: patches for a distribution that is installed here
    needed, _ = counting_patch("needed-fix", target="pluggy", below=(99, 0))
    stale, _ = counting_patch("stale-fix", target="pluggy", below=(0, 1))
    absent, _ = counting_patch("absent-fix", target="no-such-distribution")
    listed_patches([needed, stale, absent])
    rows = dict(report("cpu"))
    assert rows["patch needed-fix"].startswith("needed - needed-fix: fixed upstream")
    assert rows["patch stale-fix"].startswith("not needed for pluggy ")
    assert rows["patch absent-fix"].startswith("no-such-distribution not installed")
    apply_patches(load_backend("cpu").patches())
    assert dict(report("cpu"))["patch needed-fix"].startswith("already applied")


def test_doctor_says_when_a_backend_lists_no_patches():
    assert dict(report("cpu"))["patches"] == "none listed for 'cpu'"
