"""The errors lmix raises on purpose.

Every check of a user's input (a hyperparameter, a config value, a command-line argument, a
record on disk) raises a subclass of :class:`LmixError`. The command line turns exactly these
into one line on stderr and exit code 2; any other exception is a bug and shows its traceback.
``LmixValueError`` and ``LmixTypeError`` are also ``ValueError`` and ``TypeError``, so code that
catches the built-in types keeps working.
"""

from __future__ import annotations

__all__ = ["LmixError", "LmixValueError", "LmixTypeError"]


class LmixError(Exception):
    """Base class of every error lmix raises on purpose (a bad input, not a bug)."""


class LmixValueError(LmixError, ValueError):
    """A value outside what is allowed; the message says what was wrong and what is allowed."""


class LmixTypeError(LmixError, TypeError):
    """A value of the wrong type; the message says what was given and what is allowed."""
