"""Decide once per process how the ROCm engine frees memory between rollouts, and say so once."""

from __future__ import annotations

import functools
import logging
from typing import Any

from backend_rocm.engine_args import SleepPlan, plan_sleep
from backend_rocm.probe import SleepSupport, sleep_mode_support, verify_sleep_cycle

log = logging.getLogger("tandem.rocm")


@functools.cache
def sleep_support(verify_cycle: bool) -> SleepSupport:
    """The static check, then (if asked and it passed) a real sleep/wake cycle on the GPU."""
    support = sleep_mode_support()
    if support.available and verify_cycle:
        support = verify_sleep_cycle()
    return support


@functools.cache
def _announce(plan: SleepPlan) -> None:
    (log.info if plan.mode in ("sleep", "off") else log.warning)("ROCm rollout memory: %s", plan.reason)


def sleep_plan_for(cfg: Any) -> SleepPlan:
    """The plan for the composed config (`rollout.free_cache_engine`, `backend.settings.*`)."""
    settings = cfg.backend.settings
    free = bool(cfg.rollout.free_cache_engine)
    support = sleep_support(bool(settings.verify_sleep_cycle)) if free else SleepSupport(False, "not asked for")
    plan = plan_sleep(free, support.available, support.reason, str(settings.sleep_fallback))
    _announce(plan)
    return plan
