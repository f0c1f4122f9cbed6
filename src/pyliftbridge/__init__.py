"""pyliftbridge: a pure-Python client for Liftbridge, with no grpcio."""

from __future__ import annotations

from ._status import Status, StatusCode
from ._version import __version__
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all

__all__ = ["Status", "StatusCode", "__version__", *_errors_all]
