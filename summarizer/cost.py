"""Estimated cost of LLM calls from a price table (USD per million tokens, in settings)."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["cost_usd"]


def cost_usd(
    prices: Mapping[str, tuple[float, float]],
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> float:
    """0.0 for a model missing from the table (unknown price, counted tokens still shown)."""
    price = prices.get(model)
    if price is None:
        # dated snapshots ("gpt-4o-mini-2024-07-18") use their family's price
        family = max((m for m in prices if model.startswith(m)), key=len, default=None)
        if family is None:
            return 0.0
        price = prices[family]
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000
