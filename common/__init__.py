"""Pieces shared by the crawler and the summarizer: settings, Redis keys and scripts, URLs."""
