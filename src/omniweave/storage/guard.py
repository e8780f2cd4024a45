"""`guarded(stage)`: a stage's service entry point run inside `engine.memory_guard`, as a decorator.

An out-of-memory inside the decorated function (DuckDB's, an Arrow reader's, Python's) becomes a
`MemoryLimitError` naming the stage and the `memory_limit` setting, instead of a traceback from deep in a query
or a kill. The function's first argument is the Runtime (or None, for a service that can run without a home);
its engine's `memory_limit` is the one named.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def guarded(stage: str) -> Callable[[Callable[Concatenate[Any, P], R]], Callable[Concatenate[Any, P], R]]:
    """Decorate a service entry point `f(runtime, ...)` so that running out of memory names `stage`."""

    def wrap(fn: Callable[Concatenate[Any, P], R]) -> Callable[Concatenate[Any, P], R]:
        @functools.wraps(fn)
        def run(runtime: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
            import duckdb

            try:
                return fn(runtime, *args, **kwargs)
            except (duckdb.OutOfMemoryException, MemoryError, OSError):
                # storage.engine loads Ibis and Arrow: only when there is an error to word (a paths file's
                # `attribution` needs neither, and starts in a third of a second less without them)
                from omniweave.storage.engine import memory_guard

                limit = runtime.engine.memory_limit if runtime is not None else None
                with memory_guard(stage, limit):
                    raise

        return run

    return wrap
