"""The crawler: frontier, fetching, parsing and the worker that ties them together."""
