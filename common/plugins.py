"""Loading users' functions named ``package.module:function`` (summarizers, extractors)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from common.errors import ConfigError

__all__ = ["UserFn", "load_callable"]

UserFn = Callable[..., Any]


def load_callable(path: str, what: str = "summarizer") -> UserFn:
    """Import ``package.module:function``; raise ConfigError with the reason when it fails."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{what} {path!r}: expected 'module:function'")
    try:
        module = importlib.import_module(module_name)
        fn = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load {what} {path!r}: {exc}") from exc
    except Exception as exc:  # the module itself raised while importing
        raise ConfigError(f"cannot load {what} {path!r}: {type(exc).__name__}: {exc}") from exc
    if not callable(fn):
        raise ConfigError(f"{what} {path!r} is not callable")
    return fn  # type: ignore[no-any-return]
