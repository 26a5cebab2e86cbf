"""Bounded caches for the offline model's pure functions of strings.

One turn asks the same questions of the same texts many times (a message's plain words for each
tool and each colleague, a tool description's hint for every call of the turn), and every call of a
graph binds the same tools. Each such function is memoised here, on immutable arguments only, with
a bound so a worker's memory stays flat however many conversations pass through it. ``clear_all``
forgets everything: the tests compare cold and warm answers, and the benchmark measures both.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

TEXTS = 512
"""Entries per cache of message texts. A turn reuses a few dozen; messages may be up to 20,000
characters, so this bounds one cache's keys to ~10 MB in the worst case (a few hundred KB normally)."""
DESCRIPTIONS = 2048
"""Entries per cache of tool descriptions, hint lines and hint words: a graph has a few dozen."""

F = TypeVar("F", bound=Callable[..., Any])
_CACHES: list[Any] = []


def memo(size: int) -> Callable[[F], F]:
    """``functools.lru_cache(size)``, registered so ``clear_all`` reaches it. Only for pure functions
    of hashable, immutable arguments that return immutable values."""

    def wrap(function: F) -> F:
        cached = lru_cache(maxsize=size)(function)
        _CACHES.append(cached)
        return cached  # type: ignore[return-value]

    return wrap


def clear_all() -> None:
    """Empty every cache made with ``memo``."""
    for cached in _CACHES:
        cached.cache_clear()
