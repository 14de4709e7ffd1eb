"""Long pages by map-reduce, instead of cutting them to the input budget.

A page over the input budget is split into token-sized chunks that overlap; each chunk is
summarized (or extracted) by its own call, concurrently, every call through the same shared
RPM/TPM buckets and adaptive limit as any other; a reduce step then combines the answers:

* summaries: a summary of the chunk summaries, in as many levels as needed for the summaries
  of one reduce call to fit the input budget (hierarchical);
* extraction: ``merge`` (objects merged key by key, arrays concatenated without duplicates,
  equal scalars kept, missing values filled from the chunks that have them), and one reduce
  call, answered against the schema and validated like any answer, when scalars disagree or
  the merged object does not validate (e.g. a concatenated array over ``maxItems``).

What one doc may spend (prompt + completion over all its calls, ``--llm-max-doc-tokens``) is
planned before the first call at every call's worst case (its whole prompt and a ``max_tokens``
answer): a page whose plan is over the cap keeps the chunks that fit, from the beginning, and
is marked ``truncated``. ``DocBudget`` then holds each call to the cap as it goes: a call the
plan could not foresee (a repair of an invalid answer) that finds the budget spent fails the
doc with reason ``max_doc_tokens``.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from common.errors import ConfigError, PermanentError
from common.settings import LLMSettings
from summarizer.budget import TokenCounter
from summarizer.engines import DocFailed, Request, Summary
from summarizer.schema import InvalidAnswer, OutputSchema

__all__ = [
    "DOC_FAILED",
    "MAX_DOC_TOKENS",
    "DocBudget",
    "Merged",
    "OneCall",
    "Shape",
    "failed_with_spent",
    "gather_all",
    "identity",
    "map_reduce",
    "merge",
    "pack",
    "plan",
    "resolve",
    "worst_cost",
]

MAX_DOC_TOKENS = "max_doc_tokens"
"""The reason a doc fails with when a call would take it past ``--llm-max-doc-tokens``."""
DOC_FAILED = "doc_failed"
"""The reason of a call not sent because another call of its doc failed (never a doc's)."""

# "Part 12: " and the blank line between parts, in tokens (generously)
_PART_TOKENS = 6

T = TypeVar("T")


class DocBudget:
    """What one doc has spent and booked over all its calls, against its cap. A call books
    its estimate (prompt + ``max_tokens``) before it goes and settles its ``usage`` after."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.calls = 0
        self.model = ""
        self.closed = False  # a call of the doc failed: the ones not sent yet are not sent
        self._booked = 0

    @property
    def spent(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def close(self) -> None:
        """The doc has failed: calls not yet sent stop (``check``), those in flight finish."""
        self.closed = True

    def check(self) -> None:
        """Raise when the doc has failed meanwhile (before a call is sent)."""
        if self.closed:
            raise DocFailed("another call of this doc failed", self.summary(""), DOC_FAILED)

    def book(self, estimate: int) -> None:
        self.check()
        if self.spent + self._booked + estimate > self.cap:
            raise DocFailed(
                f"the doc's next call (up to {estimate} tokens) would take it past "
                f"--llm-max-doc-tokens {self.cap} ({self.spent} spent, {self._booked} booked)",
                self.summary(""),
                MAX_DOC_TOKENS,
            )
        self._booked += estimate

    def settle(self, estimate: int, answer: Summary | None) -> None:
        """Release a booking; ``answer``: the call answered, its tokens are spent."""
        self._booked -= estimate
        if answer is not None:
            self.prompt_tokens += answer.prompt_tokens
            self.completion_tokens += answer.completion_tokens
            self.calls += answer.calls
            self.model = answer.summarizer

    def summary(self, text: str, **fields: Any) -> Summary:
        """``text`` with every call's tokens."""
        return Summary(
            text,
            self.model,
            self.prompt_tokens,
            self.completion_tokens,
            self.calls,
            **fields,
        )


class OneCall(Protocol):
    """One prompt's answer (a summary, or a validated extraction), spent from ``budget``; with
    ``cut`` the text is cut to the input budget (a JSON reduce input must not be cut)."""

    def __call__(
        self, request: Request, budget: DocBudget, *, cut: bool = True
    ) -> Awaitable[Summary]: ...


# -- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shape:
    """The token sizes of one doc's calls."""

    room: int  # chunk text per map call
    map_frame: int  # the rest of a map prompt (template, schema message)
    reduce_frame: int  # a reduce prompt without its input
    max_input: int
    max_tokens: int  # the most one answer may take
    extraction: bool

    @classmethod
    def of(cls, request: Request, llm: LLMSettings, counter: TokenCounter) -> Shape:
        profile = request.profile
        schema = 0 if profile.schema is None else counter.count(profile.schema.instructions())
        frame = counter.count(profile.prompt.format(title=request.title, url=request.url, text=""))
        reduce = _reduce_prompt(request, llm).format(title=request.title, url=request.url, text="")
        return cls(
            room=max(16, llm.max_input_tokens - frame - schema),
            map_frame=frame + schema,
            reduce_frame=counter.count(reduce) + schema,
            max_input=llm.max_input_tokens,
            max_tokens=profile.max_tokens,
            extraction=profile.schema is not None,
        )


def worst_cost(shape: Shape, chunk_tokens: Sequence[int]) -> int:
    """The most a doc of these chunks may spend: every answer ``max_tokens`` long, every reduce
    group as full as the input budget allows."""
    maps = sum(shape.map_frame + t + shape.max_tokens for t in chunk_tokens)
    n = len(chunk_tokens)
    if n <= 1:
        return maps
    answer = shape.max_tokens + _PART_TOKENS
    if shape.extraction:  # one reduce call, over the merged object and the conflicts
        return maps + shape.reduce_frame + n * answer + shape.max_tokens
    fan_in = max(2, (shape.max_input - shape.reduce_frame) // answer)
    reduces = 0
    while n > 1:
        groups = -(-n // fan_in)
        reduces += groups * (shape.reduce_frame + shape.max_tokens) + n * answer
        n = groups
    return maps + reduces


def plan(
    shape: Shape, chunks: list[str], counter: TokenCounter, cap: int
) -> tuple[list[str], bool]:
    """The chunks from the beginning whose worst cost fits ``cap`` (at least one), and
    whether any was left out."""
    tokens = [counter.count(c) for c in chunks]
    n = len(chunks)
    while n > 1 and worst_cost(shape, tokens[:n]) > cap:
        n -= 1
    return chunks[:n], n < len(chunks)


def pack(parts: Sequence[str], counter: TokenCounter, room: int) -> list[list[str]]:
    """``parts`` in order, in groups whose joined text fits ``room`` tokens (at least two parts
    a group, so that every level of a hierarchical reduce shrinks; a last part left alone is a
    group of one, which goes on to the next level as it is)."""
    groups: list[list[str]] = []
    current: list[str] = []
    used = 0
    for part in parts:
        size = counter.count(part) + _PART_TOKENS
        if len(current) >= 2 and used + size > room:
            groups.append(current)
            current, used = [], 0
        current.append(part)
        used += size
    if current:
        groups.append(current)
    return groups


def _joined(parts: Sequence[str]) -> str:
    return "\n\n".join(f"Part {i}: {p}" for i, p in enumerate(parts, 1))


def _reduce_prompt(request: Request, llm: LLMSettings) -> str:
    return llm.extract_reduce_prompt if request.profile.schema is not None else llm.reduce_prompt


def identity(request: Request, llm: LLMSettings) -> tuple[str, ...]:
    """The settings that shape a long page's answer besides its profile's (part of the summary
    cache's key): the doc's token cap, the chunks' overlap and the reduce prompt."""
    return str(llm.doc_token_cap), str(llm.chunk_overlap_tokens), _reduce_prompt(request, llm)


# -- the schema-aware merge ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Merged:
    """The chunks' objects merged; ``conflicts``: JSON pointer -> the distinct values the
    chunks gave there (``value`` holds the first of them meanwhile)."""

    value: Any
    conflicts: dict[str, list[Any]]


def merge(values: Sequence[Any]) -> Merged:
    """Merge the validated answers of a doc's chunks, in page order.

    Objects merge key by key (recursively); arrays are concatenated, an item equal to an
    earlier one dropped; a missing value (null, "" or an absent key) takes the value of the
    chunks that have one; scalars that agree are kept, ones that disagree (or values of
    different types) are conflicts, for the reduce call to decide."""
    conflicts: dict[str, list[Any]] = {}
    return Merged(_merge(list(values), "", conflicts), conflicts)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _merge(values: list[Any], path: str, conflicts: dict[str, list[Any]]) -> Any:
    present = [v for v in values if v is not None and v != ""]
    if not present:
        return values[0] if values else None
    if all(isinstance(v, dict) for v in present):
        keys = dict.fromkeys(k for v in present for k in v)
        return {
            k: _merge([v[k] for v in present if k in v], f"{path}/{_escape(k)}", conflicts)
            for k in keys
        }
    if all(isinstance(v, list) for v in present):
        return list(_distinct(item for v in present for item in v))
    distinct = list(_distinct(present))
    if len(distinct) > 1:
        conflicts[path] = distinct
    return copy.deepcopy(distinct[0])


def _distinct(values: Any) -> Any:
    seen: set[str] = set()
    for value in values:
        key = _canonical(value)
        if key not in seen:
            seen.add(key)
            yield value


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _steps(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def resolve(merged: Merged, answer: Any) -> Any:
    """``merged`` with each conflict settled by the reduce call's ``answer`` at that place
    (a conflict the answer leaves out keeps the first chunk's value)."""
    value = copy.deepcopy(merged.value)
    for path in merged.conflicts:
        steps = _steps(path)
        if not steps:
            return copy.deepcopy(answer)
        found, chosen = True, answer
        for step in steps:
            if not isinstance(chosen, dict) or step not in chosen:
                found = False
                break
            chosen = chosen[step]
        if not found:
            continue
        target = value
        for step in steps[:-1]:
            target = target[step]
        target[steps[-1]] = copy.deepcopy(chosen)
    return value


# -- running it ---------------------------------------------------------------------------------


async def gather_all(
    calls: Sequence[Awaitable[T]], on_failure: Callable[[], None] | None = None
) -> list[T]:
    """Every call's result, in order. A failure calls ``on_failure`` (which stops the calls not
    yet sent) and is raised once the calls in flight have finished: their tokens are spent at
    the provider whether or not we wait, so they are waited for and accounted. A ConfigError
    is raised first (it stops the worker)."""

    async def run(call: Awaitable[T]) -> T:
        try:
            return await call
        except BaseException:
            if on_failure is not None:
                on_failure()
            raise

    results = await asyncio.gather(*(run(c) for c in calls), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        config = [e for e in errors if isinstance(e, ConfigError)]
        first = [e for e in errors if not _is_doc_failed(e)]
        raise (config or first or errors)[0]
    return [r for r in results if not isinstance(r, BaseException)]


def _is_doc_failed(exc: BaseException) -> bool:
    return isinstance(exc, DocFailed) and exc.reason == DOC_FAILED


async def map_reduce(
    request: Request,
    llm: LLMSettings,
    counter: TokenCounter,
    budget: DocBudget,
    one: OneCall,
) -> Summary:
    """The doc's answer: one call when its text fits the input budget, else map-reduce.
    The Summary's tokens are not set here (the budget has them)."""
    shape = Shape.of(request, llm, counter)
    if counter.count(request.text) <= shape.room:
        return await one(request, budget)
    overlap = min(llm.chunk_overlap_tokens, shape.room // 2)
    chunks, truncated = plan(
        shape, counter.split(request.text, shape.room, overlap), counter, budget.cap
    )
    answers = await gather_all([one(dataclasses.replace(request, text=c), budget) for c in chunks])
    if len(answers) == 1:
        answer = answers[0]
    elif request.profile.schema is None:
        answer = await _reduce_summaries(request, llm, counter, budget, one, answers)
    else:
        answer = await _reduce_extractions(request, llm, budget, one, answers)
    return dataclasses.replace(answer, chunks=len(chunks), truncated=truncated)


async def _reduce_summaries(
    request: Request,
    llm: LLMSettings,
    counter: TokenCounter,
    budget: DocBudget,
    one: OneCall,
    answers: list[Summary],
) -> Summary:
    shape = Shape.of(request, llm, counter)
    reducer = dataclasses.replace(
        request, profile=dataclasses.replace(request.profile, prompt=llm.reduce_prompt)
    )
    room = shape.max_input - shape.reduce_frame

    async def reduce(parts: list[Summary]) -> Summary:
        if len(parts) == 1:  # the level's last summary, alone: on to the next level
            return parts[0]
        text = _joined([p.text for p in parts])
        return await one(dataclasses.replace(reducer, text=text), budget, cut=False)

    level = answers
    while True:
        groups = _groups(level, pack([a.text for a in level], counter, room))
        if len(groups) == 1:
            return await reduce(groups[0])
        level = await gather_all([reduce(g) for g in groups], budget.close)


def _groups(answers: list[Summary], packed: list[list[str]]) -> list[list[Summary]]:
    """``answers`` grouped as ``pack`` grouped their texts."""
    out: list[list[Summary]] = []
    start = 0
    for group in packed:
        out.append(answers[start : start + len(group)])
        start += len(group)
    return out


async def _reduce_extractions(
    request: Request,
    llm: LLMSettings,
    budget: DocBudget,
    one: OneCall,
    answers: list[Summary],
) -> Summary:
    schema = request.profile.schema
    assert schema is not None  # (an extraction's request)
    merged = merge([a.data for a in answers])
    if not merged.conflicts and _valid(schema, merged.value):
        return dataclasses.replace(answers[0], text=_compact(merged.value), data=merged.value)
    reducer = dataclasses.replace(
        request,
        text=json.dumps(
            {"merged": merged.value, "conflicts": merged.conflicts}, ensure_ascii=False
        ),
        profile=dataclasses.replace(request.profile, prompt=llm.extract_reduce_prompt),
    )
    decided = await one(reducer, budget, cut=False)  # validated against the schema
    value = resolve(merged, decided.data)
    if not _valid(schema, value):  # e.g. arrays over maxItems: the answer as it came
        value = decided.data
    return dataclasses.replace(decided, text=_compact(value), data=value)


def _valid(schema: OutputSchema, value: Any) -> bool:
    try:
        schema.check(value)
    except InvalidAnswer:
        return False
    return True


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def failed_with_spent(exc: PermanentError, budget: DocBudget) -> DocFailed:
    """``exc`` as a DocFailed carrying every call the doc made (accounted although it fails)."""
    return DocFailed(str(exc), budget.summary(""), exc.reason)
