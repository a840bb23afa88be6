"""User-facing errors.

They live in `configs` because it is the bottom layer that every other layer may
import. The CLI turns a `SafecriticError` into a one-paragraph message and exit code 2
(bad input), with no traceback: the message itself must name the problem and the fix.
"""

from __future__ import annotations


class SafecriticError(Exception):
    """Bad input the user can fix; the message says what is wrong and what to do."""

    exit_code = 2


class ConfigError(SafecriticError):
    """A config file or override is invalid."""


class UnknownEnvError(SafecriticError):
    """An environment id that is not registered."""


class DatasetError(SafecriticError):
    """A dataset is missing, exists already, or holds unusable data."""


class RunError(SafecriticError):
    """A run directory is missing, incomplete or inconsistent."""
