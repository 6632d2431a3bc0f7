"""How many CPUs this process may use (a leaf: the loaders, the image decoder and the sweep ask it)."""

from __future__ import annotations

import os

__all__ = ["available_cpus"]


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one (Linux), else the machine's count.

    A job scheduler or ``taskset`` may give a process fewer CPUs than the machine has; worker
    and thread counts should follow this number, not ``os.cpu_count()``.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
