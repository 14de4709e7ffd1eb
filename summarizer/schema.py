"""Structured extraction: a JSON Schema the LLM's answers must validate against.

The schema file is read and checked once, at startup (``--llm-schema FILE``, or a profile's
``"schema"``): a file that cannot be read, is not JSON, is not a valid JSON Schema (checked
against its own draft's metaschema by ``jsonschema``) or does not describe an object is a
``ConfigError``, one line. Answers are parsed as JSON and validated with the same
``jsonschema`` validator; an answer that is not JSON or breaks the schema raises
``InvalidAnswer``, whose message is short enough to hand back to the model in a repair prompt.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
from jsonschema.protocols import Validator

from common.errors import ConfigError

__all__ = ["INVALID_OUTPUT", "InvalidAnswer", "OutputSchema", "ResponseFormat", "load_schema"]

INVALID_OUTPUT = "invalid_output"
"""The reason a doc fails with when its answer was invalid twice (first try and one repair)."""

ResponseFormat = Literal["json_schema", "json_object"]

_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]+")


class InvalidAnswer(ValueError):
    """An answer that is not JSON or does not validate; the message says where and why."""


@dataclass(frozen=True, slots=True)
class OutputSchema:
    """A checked JSON Schema, its name for ``response_format`` and a digest for cache keys."""

    name: str
    schema: dict[str, Any]
    digest: str
    _validator: Validator = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, schema: dict[str, Any], name: str) -> OutputSchema:
        """Check ``schema`` against its draft's metaschema; ``ValueError`` says what is wrong."""
        cls_ = jsonschema.validators.validator_for(schema)
        try:
            cls_.check_schema(schema)
        except jsonschema.exceptions.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema at {exc.json_path}: {exc.message}") from exc
        if schema.get("type") != "object":
            raise ValueError(
                'the schema must describe a JSON object (top-level "type": "object"): '
                "both response formats answer with an object"
            )
        canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
        safe = _NAME_CHARS.sub("_", name).strip("_")[:64] or "extraction"
        return cls(safe, schema, digest, cls_(schema))

    def response_format(self, kind: ResponseFormat) -> dict[str, Any]:
        """The request's ``response_format`` for ``kind``."""
        if kind == "json_object":
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {"name": self.name, "schema": self.schema, "strict": True},
        }

    def instructions(self) -> str:
        """A system message carrying the schema, for providers that only take json_object
        (the model then learns the schema from the prompt, as it must)."""
        return (
            "Answer with one JSON object, and nothing else, that validates against this "
            "JSON Schema:\n" + json.dumps(self.schema, separators=(",", ":"))
        )

    def parse(self, content: str) -> Any:
        """The validated object of an answer, or ``InvalidAnswer``."""
        try:
            data = json.loads(_strip_fence(content))
        except ValueError as exc:
            raise InvalidAnswer(f"the answer is not JSON ({exc})") from exc
        self.check(data)
        return data

    def check(self, data: Any) -> None:
        """``InvalidAnswer`` unless ``data`` validates against the schema."""
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(data))
        if error is not None:
            raise InvalidAnswer(
                f"the answer does not validate against the schema at {error.json_path}: "
                f"{error.message[:300]}"
            )


def _strip_fence(content: str) -> str:
    """Models in json_object mode still wrap answers in ```json fences now and then."""
    text = content.strip()
    if text.startswith("```") and text.endswith("```"):
        text = text[3:-3]
        text = text.removeprefix("json")
    return text


def load_schema(path: str | Path) -> OutputSchema:
    """Read and check a schema file; ``ConfigError`` (one line) when anything is wrong."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the schema file {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"the schema file {path} is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"the schema file {path}: expected a JSON object (a JSON Schema)")
    name = raw.get("title") if isinstance(raw.get("title"), str) else path.stem
    try:
        return OutputSchema.from_dict(raw, str(name))
    except ValueError as exc:
        raise ConfigError(f"the schema file {path}: {exc}") from exc
