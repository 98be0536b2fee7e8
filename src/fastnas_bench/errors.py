"""Exceptions with one-line messages that name the offending value."""

from __future__ import annotations


class BadInputError(ValueError):
    """A user-supplied value (spec field, option, path) is invalid; the message names it."""
