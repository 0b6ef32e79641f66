"""Progress bars for the phases of a step (rollout, update, validation).

Bars go to stderr and disappear when done, so the console table stays the run's record; they
switch themselves off when stderr is not a terminal (CI logs, `> log.txt`).
"""

from __future__ import annotations

from tqdm.auto import tqdm


def phase_bar(phase: str, total: int, unit: str = "it", enabled: bool = True) -> tqdm:
    """A bar for one phase: `with phase_bar("update", n_micro) as bar: ... bar.update(1)`."""
    return tqdm(total=total, desc=phase, unit=unit, leave=False, dynamic_ncols=True, disable=None if enabled else True)
