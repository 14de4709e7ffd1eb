"""Scope rules on canonical URLs: plain string checks, no I/O (the admission hot path)."""

from __future__ import annotations

import re

from common.errors import ConfigError
from common.urls import host_matches, host_of

__all__ = ["Scope"]


class Scope:
    """Allowed domains (and their subdomains), include and exclude regexes."""

    __slots__ = ("_domains", "_exclude", "_include")

    def __init__(
        self,
        allowed_domains: list[str],
        include: list[str] | None = None,
        exclude: list[str] | None = None,
    ) -> None:
        self._domains = tuple(d.lower().strip(".") for d in allowed_domains)
        self._include = _compile(include or [], "include")
        self._exclude = _compile(exclude or [], "exclude")

    def reject_reason(self, canonical_url: str) -> str | None:
        """None if the URL is in scope, else the reason it is not."""
        if self._domains and not host_matches(host_of(canonical_url), self._domains):
            return "off_domain"
        if self._exclude is not None and self._exclude.search(canonical_url):
            return "excluded"
        if self._include is not None and not self._include.search(canonical_url):
            return "not_included"
        return None


def _compile(patterns: list[str], what: str) -> re.Pattern[str] | None:
    if not patterns:
        return None
    try:
        return re.compile("|".join(f"(?:{p})" for p in patterns))
    except re.error as exc:
        raise ConfigError(f"invalid {what} pattern: {exc}") from exc
