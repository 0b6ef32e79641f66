"""One value where the schema wants a list: `data.train_files=train.parquet` means `[train.parquet]`.

verl's command lines give a single file that way, and Hydra refuses it for a list field ("str is not a
ListConfig"). Before Hydra parses the command line, an override of a list-typed key whose value is not a
list (nor null) is wrapped in brackets; `a.parquet,b.parquet` becomes a two-item list.
"""

from __future__ import annotations

import dataclasses
import re
import typing

OVERRIDE = re.compile(r"^(?P<plus>\+{0,2})(?P<key>[A-Za-z_][\w.]*)=(?P<value>.*)$", re.S)


def list_keys(schema: type, prefix: str = "") -> set[str]:
    """Dotted keys of `schema`'s (a dataclass's) list-typed fields, nested dataclasses included."""
    keys: set[str] = set()
    for name, hint in typing.get_type_hints(schema).items():
        key = f"{prefix}{name}"
        candidates = typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)  # Optional[...]
        for candidate in candidates:
            if typing.get_origin(candidate) is list:
                keys.add(key)
            elif dataclasses.is_dataclass(candidate):
                keys |= list_keys(candidate, f"{key}.")
    return keys


def single_values_as_lists(argv: list[str], schema: type) -> list[str]:
    """`argv` with every override of a list-typed key of `schema` given a list."""
    lists = list_keys(schema)

    def as_list(arg: str) -> str:
        match = OVERRIDE.match(arg)
        if not match or match["key"] not in lists:
            return arg
        value = match["value"]
        if value.startswith("[") or value in ("", "null"):
            return arg
        return f"{match['plus']}{match['key']}=[{value}]"

    return [as_list(arg) for arg in argv]
