"""Edit one function of an installed library the way its maintainers later did, in place.

Some vLLM fixes are "delete these lines" or "change this assignment"; the AMD and vLLM 0.7 notes
ask users to make them by hand in site-packages. `rewrite_function` makes the same edit on the
function's own source (an `ast.NodeTransformer`) and swaps the compiled result into the existing
function object (`fn.__code__`), so every module that imported the function by name sees it.
Source that no longer contains the code to change is left alone: it already has the fix.
"""

from __future__ import annotations

import ast
import inspect
import logging
import textwrap
from typing import Callable

log = logging.getLogger("tandem.patches")

MARK = "__tandem_rewrites__"  # names of the rewrites applied to a function object


class Rewrite(ast.NodeTransformer):
    """A source edit; subclasses set `changed = True` when they edit something."""

    changed = False


def rewrite_function(fn: Callable, rewrite: Rewrite, name: str) -> bool:
    """Apply `rewrite` to `fn`'s source and install the result in `fn`; True if `fn` changed.

    Idempotent: a rewrite already recorded on `fn` under `name` is not applied again. Functions
    with closures (including methods that call `super()`) are refused: their new code could not
    reuse the old closure cells.
    """
    if name in getattr(fn, MARK, ()):
        return False
    if fn.__code__.co_freevars:
        raise RuntimeError(f"cannot rewrite {fn.__qualname__}: it has free variables {fn.__code__.co_freevars}")
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    definition = tree.body[0]
    definition.decorator_list = []  # the object being patched is already decorated
    tree = ast.fix_missing_locations(rewrite.visit(tree))
    if not rewrite.changed:
        log.info("%s: nothing to change for %s (this source already has the fix)", fn.__qualname__, name)
        return False
    ast.increment_lineno(tree, fn.__code__.co_firstlineno - 1)  # tracebacks keep pointing at the file
    namespace: dict = {}
    exec(compile(tree, fn.__code__.co_filename, "exec"), fn.__globals__, namespace)
    fn.__code__ = namespace[definition.name].__code__
    setattr(fn, MARK, (*getattr(fn, MARK, ()), name))
    return True
