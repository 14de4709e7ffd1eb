"""JSON answers for the mock LLM (tests/mock_llm.py): ``response_format`` as the API takes it.

* :func:`check_format` checks a request's ``response_format`` the way OpenAI's API does and
  returns the schema to answer to, or an error message for a 400 (``param: response_format``
  or ``messages``): an unknown or unsupported type; a ``json_schema`` without a valid ``name``
  or ``schema``; with ``strict: true``, an object schema without ``additionalProperties:
  false`` or whose ``required`` does not list every property (OpenAI's strict-mode rules); a
  ``json_object`` request whose messages never say "json".
* :func:`fit` builds a value that validates against a schema (strings from the given words).
  Supported: ``type`` (first non-null of a list), ``properties`` (all of them are filled),
  ``items``/``minItems``/``maxItems``, ``enum``, ``const``, ``anyOf``/``oneOf``/``allOf``
  (the first branch), local ``$ref`` (``#/...``), ``minLength``/``maxLength``,
  ``minimum``/``maximum``, common ``format``s.
* :func:`violate` breaks a fitting value: drops a required property when there is one,
  else answers the wrong type.
* :func:`schema_in_prompt`: a ``json_object`` request carries no schema, so the mock does
  what a model does and follows the first JSON object found in a system message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["FAULTS", "check_format", "fit", "malformed", "schema_in_prompt", "violate"]

FAULTS = ("none", "malformed", "violating")
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_FORMATS = {
    "date": "2024-01-31",
    "date-time": "2024-01-31T12:00:00Z",
    "time": "12:00:00",
    "uri": "https://example.com/",
    "email": "someone@example.com",
}

Json = dict[str, Any]


def check_format(
    body: Json, supported: tuple[str, ...], messages: list[Any]
) -> tuple[str, Json | None] | str:
    """(type, schema to fit or None) of a valid ``response_format``, else a 400's message."""
    fmt = body.get("response_format")
    if fmt is None:
        return "text", None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if not isinstance(kind, str):
        return "Invalid type for 'response_format': expected an object with a 'type'."
    if kind not in ("text", "json_object", "json_schema"):
        return f"Invalid value for 'response_format.type': '{kind}'."
    if kind not in supported:
        return (
            f"Invalid parameter: 'response_format' of type '{kind}' is not supported with "
            "this model."
        )
    if kind == "json_object":
        if "json" not in json.dumps(messages).lower():
            return (
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'."
            )
        return kind, None
    if kind == "json_schema":
        return _check_json_schema(fmt.get("json_schema"))
    return kind, None


def _check_json_schema(spec: object) -> tuple[str, Json] | str:
    if not isinstance(spec, dict):
        return "Missing required parameter: 'response_format.json_schema'."
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        return "Invalid 'response_format.json_schema.name': expected [a-zA-Z0-9_-]{1,64}."
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        return "Invalid 'response_format.json_schema.schema': expected an object."
    if spec.get("strict") is True:
        problem = _strict_problem(schema, ())
        if problem is not None:
            return f"Invalid schema for response_format '{name}': {problem}"
    return "json_schema", schema


def _strict_problem(schema: object, where: tuple[str, ...]) -> str | None:
    """What OpenAI's strict mode refuses in ``schema`` (the first thing found), if anything."""
    if not isinstance(schema, dict):
        return None
    context = f"In context=({', '.join(repr(w) for w in where)})"
    if schema.get("type") == "object" or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            return f"{context}, 'additionalProperties' is required to be supplied and to be false."
        props = schema.get("properties", {})
        missing = [k for k in props if k not in schema.get("required", [])]
        if missing:
            return (
                f"{context}, 'required' is required to be supplied and to be an array "
                f"including every key in properties. Missing '{missing[0]}'."
            )
    children: list[tuple[str, object]] = [
        *(("properties", v) for v in schema.get("properties", {}).values()),
        ("items", schema.get("items")),
        *(("$defs", v) for v in schema.get("$defs", {}).values()),
        *((k, v) for k in ("anyOf", "oneOf", "allOf") for v in schema.get(k, [])),
    ]
    for key, child in children:
        problem = _strict_problem(child, (*where, key))
        if problem is not None:
            return problem
    return None


def schema_in_prompt(messages: list[Any]) -> Json | None:
    """The first JSON object in a system message's text, if any."""
    decoder = json.JSONDecoder()
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "system":
            continue
        text = message.get("content")
        if not isinstance(text, str):
            continue
        start = text.find("{")
        while start != -1:
            try:
                value, _ = decoder.raw_decode(text, start)
            except ValueError:
                start = text.find("{", start + 1)
                continue
            if isinstance(value, dict):
                return value
            start = text.find("{", start + 1)
    return None


def fit(schema: object, words: list[str]) -> Any:
    """A value valid under ``schema``; its strings are taken from ``words`` in turn."""
    source = iter(words * 50 or ["text"] * 50)
    return _fit(schema, schema, source)


def _resolve(ref: str, root: object) -> object:
    node = root
    for part in ref.removeprefix("#/").split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _fit(schema: object, root: object, words: Iterator[str]) -> Any:  # noqa: C901 (one switch)
    if not isinstance(schema, dict):
        return None
    if isinstance(schema.get("$ref"), str):
        return _fit(_resolve(schema["$ref"], root), root, words)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _fit(schema[key][0], root, words)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        return {k: _fit(v, root, words) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        n = min(max(1, int(schema.get("minItems", 1))), int(schema.get("maxItems", 2)), 2)
        return [_fit(schema.get("items", {}), root, words) for _ in range(n)]
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, words)


def _number(schema: Json, *, integer: bool) -> int | float:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    value: float = 1 if integer else 1.5
    if isinstance(low, int | float):
        value = low + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
    high = schema.get("maximum")
    if isinstance(high, int | float) and value > high:
        value = high
    return int(value) if integer else float(value)


def _string(schema: Json, words: Iterator[str]) -> str:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        return _FORMATS[fmt]
    text = " ".join(next(words) for _ in range(3))
    text = text.ljust(int(schema.get("minLength", 0)), "x")
    if "maxLength" in schema:
        text = text[: int(schema["maxLength"])]
    return text


def violate(schema: object, value: Any) -> Any:
    """``value`` broken against ``schema``: a required property dropped, or the wrong type."""
    if isinstance(value, dict) and isinstance(schema, dict) and schema.get("required"):
        return {k: v for k, v in value.items() if k != schema["required"][0]}
    return ["not", "what", "the", "schema", "asks"] if isinstance(value, dict) else {"no": 1}


def malformed(content: str) -> str:
    """A JSON answer cut short (what a model stopped mid-answer sends)."""
    return content[: max(1, len(content) // 2)]
