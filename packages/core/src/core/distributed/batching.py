"""Batching that scales: rows spread over data-parallel ranks by tokens, micro-batches by a token budget.

Every function here returns row *indices*, so callers pick rows with `TrainingBatch.select` and the
loss convention of core/algorithms/aggregation.py (global counts, summed gradients) keeps the
result exact however the rows are grouped.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import torch

from core.distributed.collectives import max_over_ranks
from core.errors import TandemError


def balance_rows(lengths: list[int], parts: int) -> list[list[int]]:
    """Split row indices into `parts` lists of equal row counts and near-equal total lengths (greedy LPT).

    Longest rows first, each to the currently lightest part that still has room (ceil(rows/parts)
    rows; ties: lowest part index), so the result is deterministic. Equal row counts give every
    rank the same number of mini-batches; equal tokens make ranks finish together.
    E.g. lengths [5, 4, 3, 3, 1], 2 parts -> 5 A; 4 B; 3 B (4 < 5); 3 A (5 < 7); 1 B (7 < 8) -> 8 | 8.
    """
    if parts < 1:
        raise TandemError(f"cannot split a batch into {parts} data-parallel parts")
    capacity = -(-len(lengths) // parts)
    order = sorted(range(len(lengths)), key=lambda row: (-lengths[row], row))
    heap = [(0, part) for part in range(parts)]  # (tokens, part) of parts with room
    assigned: list[list[int]] = [[] for _ in range(parts)]
    for row in order:
        tokens, part = heapq.heappop(heap)
        assigned[part].append(row)
        if len(assigned[part]) < capacity:
            heapq.heappush(heap, (tokens + lengths[row], part))
    return [sorted(rows) for rows in assigned]


def balance_groups(lengths: list[int], group_ids: list[int], parts: int) -> list[list[int]] | None:
    """`balance_rows` over whole groups (a prompt's rows), so that the shared-prompt forward runs each prompt once
    over all ranks, not once per rank its rows landed on; None where whole groups cannot give every part the same
    number of rows (groups of unequal sizes, or a group count that `parts` does not divide).
    E.g. groups of 2 rows with tokens 9, 7, 5, 3 over 2 parts -> 9 A; 7 B; 5 B (7 < 9); 3 A -> 12 | 12."""
    groups = rows_by_group(group_ids)
    if parts < 1 or len(groups) % parts or len({len(rows) for rows in groups}) > 1:
        return None
    group_tokens = [sum(lengths[row] for row in rows) for rows in groups]
    return [sorted(row for g in part for row in groups[g]) for part in balance_rows(group_tokens, parts)]


def rows_by_group(group_ids: list[int]) -> list[list[int]]:
    """Row indices of each group, groups in order of first appearance: [1, 0, 1] -> [[0, 2], [1]]."""
    members: dict[int, list[int]] = {}
    for row, group in enumerate(group_ids):
        members.setdefault(group, []).append(row)
    return list(members.values())


def data_parallel_rows(lengths: list[int], group_ids: list[int], parts: int) -> list[list[int]]:
    """Each data-parallel rank's rows: whole groups where they split evenly (`balance_groups`), else rows."""
    return balance_groups(lengths, group_ids, parts) or balance_rows(lengths, parts)


def micro_batches_by_tokens(lengths: list[int], max_tokens: int, padded: bool) -> list[list[int]]:
    """Group row indices into micro-batches of at most `max_tokens` tokens each.

    `padded`: a micro-batch costs rows x its longest row (the padded forward); otherwise it costs
    the sum of its lengths (the packed, padding-free forward). Rows are taken longest first, so
    padded micro-batches hold rows of similar length. A row longer than the budget goes alone.
    E.g. lengths [6, 2, 5, 3], budget 8, packed -> [[0, 1], [2, 3]] (6+2, 5+3).
    """
    if max_tokens < 1:
        raise TandemError(f"trainer.max_tokens_per_gpu={max_tokens} must be positive")
    order = sorted(range(len(lengths)), key=lambda row: (-lengths[row], row))
    groups: list[list[int]] = []
    current: list[int] = []
    for row in order:
        candidate = [*current, row]
        cost = len(candidate) * lengths[candidate[0]] if padded else sum(lengths[r] for r in candidate)
        if current and cost > max_tokens:
            groups.append(current)
            candidate = [row]
        current = candidate
    if current:
        groups.append(current)
    return groups


def micro_batches_by_groups(lengths: list[int], prompt_lengths: list[int], group_ids: list[int],
                            max_tokens: int | None = None, rows_per_micro: int | None = None) -> list[list[int]]:
    """Micro-batches for the shared-prompt forward (core/distributed/shared_prompts.py): rows of one prompt
    together, since a micro-batch pays each of its prompts once plus its rows' responses.

    With `max_tokens`: each group cut into as few chunks as fit the budget (a chunk pays its prompt), then the
    chunks, largest first, filled into micro-batches as `micro_batches_by_tokens` fills rows. Otherwise
    `rows_per_micro` rows each, in group order. E.g. groups of 16, 12 and 4 tokens, budget 16 -> [16], [12 + 4].
    """
    groups = rows_by_group(group_ids)
    if not max_tokens:
        ordered = [row for rows in groups for row in rows]
        return [ordered[start:start + rows_per_micro] for start in range(0, len(ordered), rows_per_micro)]
    chunks: list[tuple[int, list[int]]] = []  # (tokens, rows)
    for rows in groups:
        prompt = prompt_lengths[rows[0]]
        tokens, chunk = prompt, []
        for row in rows:
            response = lengths[row] - prompt_lengths[row]
            if chunk and tokens + response > max_tokens:
                chunks.append((tokens, chunk))
                tokens, chunk = prompt, []
            tokens, chunk = tokens + response, [*chunk, row]
        chunks.append((tokens, chunk))
    chunks.sort(key=lambda c: (-c[0], c[1][0]))
    micro: list[list[int]] = []
    tokens = 0
    for chunk_tokens, rows in chunks:
        if micro and tokens + chunk_tokens <= max_tokens:
            micro[-1].extend(rows)
            tokens += chunk_tokens
        else:
            micro.append(list(rows))
            tokens = chunk_tokens
    return micro


def split_to_count(groups: list[list[int]], count: int) -> list[list[int]]:
    """Split the largest groups until there are `count` of them (empty groups if rows run out).

    Every data-parallel rank must run the same number of forward passes (FSDP gathers parameters
    in each one), so ranks pad their micro-batch lists to the longest rank's count; splitting
    keeps each micro-batch within its budget.
    """
    groups = [list(group) for group in groups]
    while len(groups) < count:
        largest = max(range(len(groups)), key=lambda i: len(groups[i])) if groups else None
        if largest is None or len(groups[largest]) < 2:
            groups.append([])
            continue
        group = groups.pop(largest)
        half = len(group) // 2
        groups[largest:largest] = [group[:half], group[half:]]
    return groups


def row_lengths(attention_mask: torch.Tensor) -> list[int]:
    """Real tokens per row of a [rows, seq_len] mask."""
    return attention_mask.sum(-1).tolist()


@dataclass(frozen=True)
class MicroBatch:
    rows: torch.Tensor  # [micro_rows] int64 indices into the rank's batch
    dummy: bool = False  # True: a filler pass so this rank matches the others' count; its loss is x0


def plan_micro_batches(attention_mask: torch.Tensor, max_tokens: int | None, rows_per_micro: int, padded: bool,
                       prompt_groups: tuple[list[int], list[int]] | None = None):
    """This rank's micro-batches, as many as on the busiest rank (all ranks must agree).

    attention_mask: [rows, seq_len]. With `max_tokens` set, micro-batches follow the token budget
    (dynamic batch size); otherwise they hold `rows_per_micro` rows each. A rank with fewer rows
    than micro-batches gets dummy passes over its first row, which contribute nothing.
    `prompt_groups` (each row's prompt length and group id): the shared-prompt forward's micro-batches.
    """
    lengths = row_lengths(attention_mask)
    if prompt_groups is not None:
        groups = micro_batches_by_groups(lengths, *prompt_groups, max_tokens=max_tokens, rows_per_micro=rows_per_micro)
    elif max_tokens:
        groups = micro_batches_by_tokens(lengths, max_tokens, padded)
    else:
        groups = [list(range(start, min(start + rows_per_micro, len(lengths))))
                  for start in range(0, len(lengths), rows_per_micro)]
    groups = split_to_count(groups, max_over_ranks(len(groups)))
    return [
        MicroBatch(torch.tensor(group, dtype=torch.long)) if group
        else MicroBatch(torch.zeros(1, dtype=torch.long), dummy=True)
        for group in groups
    ]

