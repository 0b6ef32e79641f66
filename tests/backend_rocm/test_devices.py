"""HIP_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES for Ray workers, per Ray version."""

from __future__ import annotations

import pytest

from backend_rocm.devices import ray_worker_env
from core.errors import TandemError
from core.plugins.manager import load_backend

NOSET_HIP, NOSET_ROCR = "RAY_EXPERIMENTAL_NOSET_HIP_VISIBLE_DEVICES", "RAY_EXPERIMENTAL_NOSET_ROCR_VISIBLE_DEVICES"


@pytest.mark.parametrize(
    "environ, ray_version, expected",
    [
        ({}, "2.60.0", {NOSET_HIP: "1"}),
        ({}, "2.44.1", {NOSET_ROCR: "1"}),
        ({"HIP_VISIBLE_DEVICES": "0,1"}, "2.45.0", {NOSET_HIP: "1", "HIP_VISIBLE_DEVICES": "0,1",
                                                    "ROCR_VISIBLE_DEVICES": None}),
        # Ray >= 2.45 refuses a lone ROCR_VISIBLE_DEVICES: the selection moves to HIP
        ({"ROCR_VISIBLE_DEVICES": "2,3"}, "2.60.0", {NOSET_HIP: "1", "HIP_VISIBLE_DEVICES": "2,3",
                                                     "ROCR_VISIBLE_DEVICES": None}),
        # older Ray manages ROCR: the selection moves there
        ({"HIP_VISIBLE_DEVICES": "4"}, "2.40.0", {NOSET_ROCR: "1", "ROCR_VISIBLE_DEVICES": "4",
                                                  "HIP_VISIBLE_DEVICES": None}),
    ],
)
def test_visibility_mapping(environ, ray_version, expected):
    assert ray_worker_env(environ, ray_version) == expected


def test_both_set_is_refused():
    with pytest.raises(TandemError, match="both HIP_VISIBLE_DEVICES='0,1' and ROCR_VISIBLE_DEVICES='2,3' are set"):
        ray_worker_env({"HIP_VISIBLE_DEVICES": "0,1", "ROCR_VISIBLE_DEVICES": "2,3"}, "2.60.0")


def test_the_backend_gives_ray_workers_this_env(monkeypatch):
    monkeypatch.setenv("ROCR_VISIBLE_DEVICES", "1")
    monkeypatch.delenv("HIP_VISIBLE_DEVICES", raising=False)
    env = load_backend("rocm").worker_env()
    assert env == {NOSET_HIP: "1", "HIP_VISIBLE_DEVICES": "1", "ROCR_VISIBLE_DEVICES": None}  # ray 2.60 here
