"""User-facing errors: one clear line naming the culprit, never a traceback wall."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


class TandemError(Exception):
    """Something the user can fix (config, data, model path, backend). Printed without traceback."""


def exit_on_user_error(fn: F) -> F:
    """Turn a `TandemError` raised anywhere below `fn` into `tandem: error: ...` and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TandemError as exc:
            print(f"tandem: error: {exc}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
