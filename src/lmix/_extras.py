"""How to install one of lmix's extras: the one wording that every "needs the X extra" message uses.

lmix is installed from a clone of its repository (it is on no package index), so the hint is an
editable install of the clone with the extra, e.g. ``pip install -e '.[train]'``.
tests/test_packaging.py checks that every install line in README.md, docs/ and src/ is one that
works from a clone.
"""

from __future__ import annotations

from lmix.errors import LmixError

__all__ = ["install_hint", "MissingExtraModuleError"]


def install_hint(extra: str) -> str:
    """``pip install -e '.[train]' in a clone of lmix``: how to add ``extra``."""
    return f"pip install -e '.[{extra}]' in a clone of lmix"


class MissingExtraModuleError(LmixError, ModuleNotFoundError):
    """An lmix module needs a package of an extra that is not installed; the message says which extra.

    Also a ``ModuleNotFoundError`` (with ``name`` set to the missing module), so code that catches
    a missing optional dependency keeps working.
    """

    def __init__(self, what: str, extra: str, missing: str) -> None:
        super().__init__(
            f"{what} needs the '{extra}' extra (no module named {missing!r}): {install_hint(extra)}", name=missing
        )
