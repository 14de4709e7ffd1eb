"""The mock LLM's response_format handling, driven by the real ``openai`` client."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.mock_llm import MockLLM

MODEL = "gpt-mock"

PRODUCT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 3},
        "price": {"type": "number", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "stock": {"enum": ["in", "out"]},
        "seller": {"$ref": "#/$defs/seller"},
    },
    "required": ["name", "price", "tags", "stock", "seller"],
    "additionalProperties": False,
    "$defs": {
        "seller": {
            "type": "object",
            "properties": {"id": {"type": "integer", "minimum": 10}, "url": {"type": "string"}},
            "required": ["id", "url"],
            "additionalProperties": False,
        }
    },
}


def schema_format(schema: dict[str, Any], strict: bool = True) -> Any:
    return {
        "type": "json_schema",
        "json_schema": {"name": "product", "schema": schema, "strict": strict},
    }


def user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


async def answer(client: openai.AsyncOpenAI, fmt: Any, messages: Any = None) -> str:
    reply = await client.chat.completions.create(
        model=MODEL, messages=messages or user("a red kettle on sale"), response_format=fmt
    )
    content = reply.choices[0].message.content
    assert content is not None
    return content


class Seller(pydantic.BaseModel):
    id: int
    url: str


class Product(pydantic.BaseModel):
    name: str
    price: float
    tags: list[str]
    seller: Seller


async def test_openai_parse_accepts_an_answer_built_for_its_pydantic_schema(
    client: openai.AsyncOpenAI, mock: MockLLM
) -> None:
    """openai's own structured-output helper: it sends a strict json_schema made from the
    model class, and parses the mock's answer back into it."""
    reply = await client.chat.completions.parse(
        model=MODEL, messages=user("a red kettle on sale"), response_format=Product
    )
    product = reply.choices[0].message.parsed
    assert isinstance(product, Product)
    assert product.name == "a red kettle"
    assert product.tags
    [body] = mock.requests()
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True


async def test_json_schema_answers_validate(client: openai.AsyncOpenAI) -> None:
    data = json.loads(await answer(client, schema_format(PRODUCT)))
    jsonschema.validate(data, PRODUCT)
    assert data["seller"]["id"] >= 10


async def test_json_object_follows_the_schema_in_the_system_message(
    client: openai.AsyncOpenAI,
) -> None:
    messages = [
        {"role": "system", "content": "Answer in JSON fitting: " + json.dumps(PRODUCT)},
        {"role": "user", "content": "a red kettle"},
    ]
    data = json.loads(await answer(client, {"type": "json_object"}, messages))
    jsonschema.validate(data, PRODUCT)
    plain = json.loads(await answer(client, {"type": "json_object"}, user("json please")))
    assert plain == {"summary": "json please"}


@pytest.mark.parametrize(
    ("fmt", "config", "expected"),
    [
        (schema_format({**PRODUCT, "additionalProperties": True}), {}, "additionalProperties"),
        (schema_format({**PRODUCT, "required": ["name"]}), {}, "Missing 'price'"),
        (schema_format(PRODUCT), {"response_formats": ["text", "json_object"]}, "not supported"),
        ({"type": "json_object"}, {}, "must contain the word 'json'"),
        ({"type": "xml"}, {}, "response_format.type"),
    ],
)
async def test_refused_response_formats_are_400s_naming_the_parameter(
    client: openai.AsyncOpenAI, mock: MockLLM, fmt: Any, config: dict[str, Any], expected: str
) -> None:
    mock.configure(**config)
    with pytest.raises(openai.BadRequestError) as caught:
        await answer(client, fmt)
    assert expected in caught.value.message
    assert "response_format" in caught.value.message or "messages" in str(caught.value.body)


async def test_a_non_strict_schema_is_answered(client: openai.AsyncOpenAI) -> None:
    loose = {"type": "object", "properties": {"a": {"type": "string"}}}
    data = json.loads(await answer(client, schema_format(loose, strict=False)))
    jsonschema.validate(data, loose)


async def test_json_faults_hit_the_matching_requests_and_spare_repairs_when_once(
    client: openai.AsyncOpenAI, mock: MockLLM
) -> None:
    fmt = schema_format(PRODUCT)
    mock.configure(json_fault="malformed", json_fault_match="BROKEN")
    with pytest.raises(ValueError, match=r"Unterminated|Expecting"):
        json.loads(await answer(client, fmt, user("BROKEN page")))
    jsonschema.validate(json.loads(await answer(client, fmt, user("good page"))), PRODUCT)

    mock.configure(json_fault="violating", json_fault_match="", json_fault_once=True)
    first = json.loads(await answer(client, fmt))
    with pytest.raises(jsonschema.ValidationError, match="'name' is a required property"):
        jsonschema.validate(first, PRODUCT)
    repair = [
        *user("a red kettle"),
        {"role": "assistant", "content": json.dumps(first)},
        {"role": "user", "content": "that was wrong"},
    ]
    jsonschema.validate(json.loads(await answer(client, fmt, repair)), PRODUCT)
    mock.configure(json_fault_once=False)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(await answer(client, fmt, repair)), PRODUCT)


async def test_max_tokens_cuts_a_json_answer_mid_object(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(
        model=MODEL,
        messages=user("one two three four five six"),
        response_format=schema_format(PRODUCT),
        max_tokens=3,
    )
    assert reply.choices[0].finish_reason == "length"
    with pytest.raises(ValueError, match=r"Unterminated|Expecting"):
        json.loads(reply.choices[0].message.content or "")
