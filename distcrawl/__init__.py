"""distcrawl: a distributed async web crawler on Redis with an LLM summarizer stage."""

__version__ = "0.1.0"
