"""Every key of a composed config must be one the schema declares, however it was given.

Hydra refuses `trainer.totl_steps=20`, but `+trainer.totl_steps=20` (the form its own error message suggests)
and `+anything=1` add a key the schema lacks, and the run would go on with the typo saved in config.json.
This walks the composed config against the schema's dataclasses; free-form dicts (`backend.settings`,
`data.reasoning_gym.datasets`, `eval.shifted`, ...) are checked by their owners, not here.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing

from omegaconf import DictConfig

from core.errors import TandemError


def unknown_keys(cfg: DictConfig, schema: type, prefix: str = "") -> list[str]:
    """Dotted names of the keys of `cfg` that the dataclass `schema` does not declare."""
    fields = _dataclass_fields(schema)
    unknown = []
    for key in cfg.keys():
        name = f"{prefix}{key}"
        if key not in fields:
            unknown.append(name)
            continue
        value = cfg._get_node(key)
        if fields[key] is not None and isinstance(value, DictConfig) and not value._is_none():
            unknown += unknown_keys(value, fields[key], f"{name}.")
    return unknown


def refuse_unknown_keys(cfg: DictConfig, schema: type) -> None:
    """One line naming each unknown key and the closest declared one."""
    unknown = [name for name in unknown_keys(cfg, schema) if name != "hydra"]  # Hydra's own section
    if unknown:
        hints = [f"{name}{_closest(name, schema)}" for name in unknown]
        raise TandemError(f"unknown config key{'s' if len(unknown) > 1 else ''}: {'; '.join(hints)} "
                          "(a '+' adds keys only where the schema has a free-form dict)")


def _dataclass_fields(schema: type) -> dict[str, type | None]:
    """Each field of `schema` -> the dataclass it is typed with, or None (plain values, dicts, lists)."""
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] if dataclasses.is_dataclass(hints[f.name]) else None
            for f in dataclasses.fields(schema)}


def _closest(name: str, schema: type) -> str:
    section, _, key = name.rpartition(".")
    node: type | None = schema
    for part in section.split(".") if section else []:
        node = _dataclass_fields(node).get(part) if node is not None else None
    if node is None:
        return ""
    match = difflib.get_close_matches(key, list(_dataclass_fields(node)), n=1)
    return f" (did you mean {section + '.' if section else ''}{match[0]}?)" if match else ""
