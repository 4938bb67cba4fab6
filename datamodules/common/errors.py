"""The one exception the dataset readers raise for bad input."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """Bad or missing input data. The message starts with the offending file (or folder) and says what is wrong."""
