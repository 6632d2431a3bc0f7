"""Sub-commands of the ``lmix`` CLI; each module has ``add_parser(subparsers)`` and sets ``func``."""

from lmix.errors import LmixError

__all__ = ["UsageError"]


class UsageError(LmixError):
    """A wrong use of a command (an option's value, a missing argument): one line on stderr, exit code 2."""
