"""The blocking twin of ``_async/_opening.py``: the resource itself is returned.

Written by hand (not by scripts/unasync.py): a blocking call has already
opened its resource when it returns, so there is nothing to wrap.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["opening"]

_T = TypeVar("_T")


def opening(resource: _T) -> _T:
    """Return ``resource`` unchanged (the blocking client has nothing to defer)."""
    return resource
