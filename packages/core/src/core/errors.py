"""User-facing errors: one clear line naming the culprit, never a traceback wall."""

from __future__ import annotations

import errno
import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


class TandemError(Exception):
    """Something the user can fix (config, data, model path, backend). Printed without traceback."""

    exit_code = 2


class RunDied(TandemError):
    """The run's numbers died (non-finite values, every reward failing): stopped with a diagnosis."""

    exit_code = 3


def exit_on_user_error(fn: F) -> F:
    """Turn a `TandemError` raised anywhere below `fn` into `tandem: error: ...` and its exit code
    (2 for bad input, 3 for a run that died)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TandemError as exc:
            print(f"tandem: error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # atomic writes (checkpoints, final/, imports) leave the previous good state in place
            where = f" writing {exc.filename}" if exc.filename else ""
            print(f"tandem: error: no space left on the device{where}; free some and resume", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
