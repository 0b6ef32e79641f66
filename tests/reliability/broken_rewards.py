"""Reward functions that misbehave, for the dead-run tests (imported by the run as module:function)."""


def always_inf(sample) -> float:
    return float("inf")


def slow(sample) -> float:
    """Slow enough (20 ms a sample) that a signal lands inside a step."""
    import time

    time.sleep(0.02)
    return 0.5


def exits(sample) -> float:
    """User code that calls sys.exit: it must not end the run silently with its exit code."""
    import sys

    sys.exit(3)


def sleepy(sample) -> float:
    """A checker that takes a minute: a run validating before training is still starting when signalled."""
    import time

    time.sleep(60)
    return 0.0
