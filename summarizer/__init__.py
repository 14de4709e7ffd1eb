"""The summarizer: LLM calls with shared limits, and an embedded extractive fallback."""
