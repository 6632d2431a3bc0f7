"""How the report writes a p-value and a difference with its interval (Markdown and terminal)."""

from __future__ import annotations

import math

__all__ = ["fmt_p", "eq_p", "signed_ci"]


def fmt_p(p: float | None) -> str:
    """``0.046 *``, ``0.120``, ``<0.001 *`` (* = p < 0.05), ``n/a`` for None."""
    if p is None:
        return "n/a"
    return f"{p:.3f}" + (" *" if p < 0.05 else "") if p >= 0.001 else "<0.001 *"


def eq_p(p: float) -> str:
    """``=0.046 *`` or ``<0.001 *``: what follows a ``p``."""
    text = fmt_p(p)
    return text if text.startswith("<") else "=" + text


def signed_ci(diff: float, ci: float | None) -> str:
    """``+0.48 [+0.33, +0.63]``; the difference alone where the interval is unknown (None or nan)."""
    if ci is None or math.isnan(ci):
        return f"{diff:+.2f}"
    return f"{diff:+.2f} [{diff - ci:+.2f}, {diff + ci:+.2f}]"
