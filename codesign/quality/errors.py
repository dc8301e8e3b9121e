"""Errors of the quality package: one line each, caught at the CLI boundary (exit 1)."""

from __future__ import annotations

from codesign.errors import CodesignError


class QualityError(CodesignError):
    """Base of every quality error (bad option, untrained model, unusable cache entry)."""


class DatasetError(QualityError):
    """A dataset file that is missing or malformed (the message names the file and line)."""


class FunnelError(QualityError):
    """A stage configuration or metric that cannot be replayed."""


class QualityTableError(QualityError):
    """A quality-table CSV that is missing or malformed, or a lookup it cannot answer."""
