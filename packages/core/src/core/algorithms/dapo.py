"""DAPO extras: dynamic sampling (keep only groups that teach something) and the over-long penalty."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

import torch

from core.algorithms.masked import group_index
from core.errors import TandemError


def informative_rows(scores: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """[batch] bool: True for rows whose group's scores are not all equal.

    A group whose responses all scored the same has zero GRPO advantage and so no gradient; a
    group of one is such a group.
    """
    scores, group_ids = torch.as_tensor(scores), torch.as_tensor(group_ids)
    dense, num_groups = group_index(group_ids)
    group_max = torch.full((num_groups,), float("-inf"), dtype=torch.float64).scatter_reduce(
        0, dense, scores.double(), reduce="amax"
    )
    group_min = torch.full((num_groups,), float("inf"), dtype=torch.float64).scatter_reduce(
        0, dense, scores.double(), reduce="amin"
    )
    return (group_max > group_min)[dense]


def _select(rows: Any, index: List[int]) -> Any:
    return rows[torch.tensor(index, dtype=torch.long)] if isinstance(rows, torch.Tensor) else [rows[i] for i in index]


def _concat(parts: List[Any]) -> Any:
    return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else [row for part in parts for row in part]


@dataclass
class DynamicSamplingAccumulator:
    """Collects informative groups over successive rollouts until `target_groups` are kept.

    The training loop drives it:
        acc = DynamicSamplingAccumulator(target_groups=prompt_batch_size, max_tries=3)
        while not acc.done:
            rows = rollout_and_score()  # dict of per-row tensors or lists, same batch length
            acc.add(rows, scores=rows["score"], group_ids=rows["group_id"])
        rows, group_ids = acc.result()
    Kept groups are renumbered 0..G-1 in the order they were accepted, so group ids from
    different rollouts never collide. Rows of a group are never split.
    """

    target_groups: int
    max_tries: int
    tries: int = 0
    kept_groups: int = 0
    _parts: List[Dict[str, Any]] = field(default_factory=list, repr=False)
    _group_ids: List[torch.Tensor] = field(default_factory=list, repr=False)

    @property
    def done(self) -> bool:
        return self.kept_groups >= self.target_groups or self.tries >= self.max_tries

    def add(self, rows: Dict[str, Any], scores: torch.Tensor, group_ids: torch.Tensor) -> None:
        """Keep the informative groups of one rollout, up to the number still missing."""
        self.tries += 1
        group_ids = torch.as_tensor(group_ids)
        keep = informative_rows(scores, group_ids).tolist()
        members: Dict[int, List[int]] = {}
        for row, (gid, kept) in enumerate(zip(group_ids.tolist(), keep)):
            if kept:
                members.setdefault(gid, []).append(row)
        accepted = list(members.values())[: self.target_groups - self.kept_groups]
        if not accepted:
            return
        index = [row for group in accepted for row in group]
        new_ids = [self.kept_groups + k for k, group in enumerate(accepted) for _ in group]
        self._parts.append({name: _select(values, index) for name, values in rows.items()})
        self._group_ids.append(torch.tensor(new_ids, dtype=torch.long))
        self.kept_groups += len(accepted)

    def result(self) -> tuple[Dict[str, Any], torch.Tensor]:
        """(rows, group_ids [rows]) of the kept groups; possibly fewer than target if tries ran out."""
        if not self._parts:
            raise TandemError(
                f"dynamic sampling kept no group in {self.tries} rollouts: every group's rewards were all "
                "equal (task too easy or too hard); raise algorithm.max_sampling_tries or change the data"
            )
        names = self._parts[0].keys()
        rows = {name: _concat([part[name] for part in self._parts]) for name in names}
        return rows, torch.cat(self._group_ids)


def overlong_penalty(
    response_lengths: torch.Tensor, max_length: int, buffer: int, penalty_factor: float
) -> torch.Tensor:
    """DAPO's soft over-long punishment per response, [batch] float (add it to the score).

    length <= max_length - buffer: 0; in (max_length - buffer, max_length]: a linear ramp
    -(length - (max_length - buffer)) / buffer * penalty_factor; beyond max_length: -penalty_factor.
    """
    lengths = torch.as_tensor(response_lengths, dtype=torch.float32)
    start = max_length - buffer
    ramp = -(lengths - start) / max(buffer, 1) * penalty_factor
    penalty = torch.where(lengths <= start, torch.zeros_like(lengths), ramp)
    return torch.where(lengths > max_length, torch.full_like(lengths, -penalty_factor), penalty)
