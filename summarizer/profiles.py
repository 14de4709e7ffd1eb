"""Per-site profiles: which model, prompt and output budget to use for which domains.

A JSON file, a list of profiles tried in order; the first whose pattern matches the page's
host wins, and fields it leaves out come from the settings::

    [{"match": "*.example.org", "model": "gpt-4o", "prompt": "...{text}", "max_tokens": 400},
     {"match": "news.*", "max_tokens": 120}]

Patterns are shell-style globs on the host (``fnmatch``).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

from common.errors import ConfigError
from common.settings import LLMSettings

__all__ = ["Profile", "Profiles"]

_FIELDS = {"match", "model", "prompt", "max_tokens"}


@dataclass(frozen=True, slots=True)
class Profile:
    model: str
    prompt: str
    max_tokens: int


class Profiles:
    def __init__(self, default: Profile, rules: list[tuple[str, Profile]]) -> None:
        self.default = default
        self._rules = rules

    @classmethod
    def from_settings(cls, llm: LLMSettings) -> Profiles:
        default = Profile(llm.model, llm.prompt, llm.max_output_tokens)
        _check_prompt(default.prompt, "the default prompt")
        if llm.profiles_file is None:
            return cls(default, [])
        try:
            raw = json.loads(Path(llm.profiles_file).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read profiles file {llm.profiles_file}: {exc}") from exc
        if not isinstance(raw, list):
            raise ConfigError(f"{llm.profiles_file}: expected a JSON list of profiles")
        rules = [_rule(item, i, default) for i, item in enumerate(raw, 1)]
        return cls(default, rules)

    def for_host(self, host: str) -> Profile:
        for pattern, profile in self._rules:
            if fnmatch.fnmatchcase(host, pattern):
                return profile
        return self.default


def _rule(item: object, i: int, default: Profile) -> tuple[str, Profile]:
    if not isinstance(item, dict) or not isinstance(item.get("match"), str):
        raise ConfigError(f"profile #{i}: expected an object with a 'match' string")
    unknown = set(item) - _FIELDS
    if unknown:
        raise ConfigError(f"profile #{i}: unknown field(s) {sorted(unknown)}")
    max_tokens = item.get("max_tokens", default.max_tokens)
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"profile #{i}: max_tokens must be a positive integer")
    profile = Profile(
        str(item.get("model", default.model)),
        str(item.get("prompt", default.prompt)),
        max_tokens,
    )
    _check_prompt(profile.prompt, f"profile #{i}")
    return item["match"].lower(), profile


def _check_prompt(prompt: str, where: str) -> None:
    if "{text}" not in prompt:
        raise ConfigError(f"{where}: the prompt template must contain {{text}}")
    try:
        prompt.format(title="", url="", text="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"{where}: bad prompt template ({exc}); use {{title}}, {{url}}, {{text}}"
        ) from exc
