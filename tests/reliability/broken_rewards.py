"""Reward functions that misbehave, for the dead-run tests (imported by the run as module:function)."""


def always_inf(sample) -> float:
    return float("inf")
