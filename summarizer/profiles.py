"""Per-site profiles: which model, prompt, output budget and schema to use for which domains.

A JSON file, a list of profiles tried in order; the first whose pattern matches the page's
host wins, and fields it leaves out come from the settings::

    [{"match": "*.example.org", "model": "gpt-4o", "prompt": "...{text}", "max_tokens": 400},
     {"match": "shop.*", "schema": "product.schema.json", "max_tokens": 600},
     {"match": "news.*", "schema": null, "max_tokens": 120}]

Patterns are shell-style globs on the host (``fnmatch``). ``schema`` is a JSON Schema file
(relative paths from the profiles file's folder): that site's docs are extracted, not
summarized; ``null`` summarizes a site although ``--llm-schema`` is set. A profile without a
``prompt`` takes the extraction prompt when it has a schema, the summary prompt otherwise.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

from common.errors import ConfigError
from common.settings import LLMSettings
from summarizer.schema import OutputSchema, load_schema

__all__ = ["Profile", "Profiles"]

_FIELDS = {"match", "model", "prompt", "max_tokens", "schema"}


@dataclass(frozen=True, slots=True)
class Profile:
    model: str
    prompt: str
    max_tokens: int
    schema: OutputSchema | None = None  # set: structured extraction instead of a summary


@dataclass(frozen=True, slots=True)
class _Prompts:
    summary: str
    extract: str

    def for_schema(self, schema: OutputSchema | None) -> str:
        return self.extract if schema is not None else self.summary


class Profiles:
    def __init__(self, default: Profile, rules: list[tuple[str, Profile]]) -> None:
        self.default = default
        self._rules = rules

    @property
    def extracts(self) -> bool:
        """Whether any site's docs are extracted with a schema."""
        return any(p.schema is not None for p in (self.default, *(p for _, p in self._rules)))

    @classmethod
    def from_settings(cls, llm: LLMSettings) -> Profiles:
        schema = load_schema(llm.schema_file) if llm.schema_file else None
        # A prompt the user set is used for extraction too; the default one asks for a summary.
        extract = llm.prompt if "prompt" in llm.model_fields_set else llm.extract_prompt
        prompts = _Prompts(llm.prompt, extract)
        default = Profile(llm.model, prompts.for_schema(schema), llm.max_output_tokens, schema)
        _check_prompt(default.prompt, "the default prompt")
        if llm.profiles_file is None:
            return cls(default, [])
        path = Path(llm.profiles_file)
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read profiles file {llm.profiles_file}: {exc}") from exc
        if not isinstance(raw, list):
            raise ConfigError(f"{llm.profiles_file}: expected a JSON list of profiles")
        rules = [_rule(item, i, default, prompts, path.parent) for i, item in enumerate(raw, 1)]
        return cls(default, rules)

    def for_host(self, host: str) -> Profile:
        for pattern, profile in self._rules:
            if fnmatch.fnmatchcase(host, pattern):
                return profile
        return self.default


def _rule(
    item: object, i: int, default: Profile, prompts: _Prompts, folder: Path
) -> tuple[str, Profile]:
    if not isinstance(item, dict) or not isinstance(item.get("match"), str):
        raise ConfigError(f"profile #{i}: expected an object with a 'match' string")
    unknown = set(item) - _FIELDS
    if unknown:
        raise ConfigError(f"profile #{i}: unknown field(s) {sorted(unknown)}")
    max_tokens = item.get("max_tokens", default.max_tokens)
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"profile #{i}: max_tokens must be a positive integer")
    schema = _schema(item, i, default, folder)
    profile = Profile(
        str(item.get("model", default.model)),
        str(item.get("prompt", prompts.for_schema(schema))),
        max_tokens,
        schema,
    )
    _check_prompt(profile.prompt, f"profile #{i}")
    return item["match"].lower(), profile


def _schema(item: dict[str, object], i: int, default: Profile, folder: Path) -> OutputSchema | None:
    if "schema" not in item:
        return default.schema
    value = item["schema"]
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"profile #{i}: schema must be a schema file's path or null")
    try:
        return load_schema(folder / value)
    except ConfigError as exc:
        raise ConfigError(f"profile #{i}: {exc}") from exc


def _check_prompt(prompt: str, where: str) -> None:
    if "{text}" not in prompt:
        raise ConfigError(f"{where}: the prompt template must contain {{text}}")
    try:
        prompt.format(title="", url="", text="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"{where}: bad prompt template ({exc}); use {{title}}, {{url}}, {{text}}"
        ) from exc
