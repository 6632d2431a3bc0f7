"""Provenance of a run: the code and machine that produced it, recorded in ``summary.json``."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

__all__ = ["provenance", "git_commit", "device_name"]


@functools.cache
def git_commit() -> str | None:
    """The commit of the git checkout lmix runs from, or None (an installed package, no git, any error).

    Only a checkout that tracks lmix's own files counts: a wheel installed into a virtual
    environment that happens to sit inside some repository must not report that repository's commit.
    """
    pkg = Path(__file__).resolve().parents[2]  # .../lmix
    try:
        tracked = subprocess.run(
            ["git", "ls-files", "--error-unmatch", "__init__.py"],
            cwd=pkg,
            capture_output=True,
            timeout=5,
            check=False,
        )
        if tracked.returncode != 0:
            return None
        head = subprocess.run(
            ["git", "rev-parse", "--verify", "HEAD"], cwd=pkg, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    commit = head.stdout.strip()
    if head.returncode != 0 or len(commit) not in (40, 64) or any(c not in "0123456789abcdef" for c in commit):
        return None
    return commit


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: torch.device) -> str:
    """The accelerator's marketing name (``NVIDIA H200``), or the CPU's model name."""
    if device.type == "cuda":
        try:
            return torch.cuda.get_device_name(device)
        except (RuntimeError, AssertionError):
            return "cuda"
    return _cpu_name()


def provenance(device: torch.device) -> dict[str, Any]:
    """``lmix_version``, ``torch_version``, ``git_commit`` (None outside a git checkout), ``device_name``."""
    from lmix import __version__

    return {
        "lmix_version": __version__,
        "torch_version": str(torch.__version__),
        "git_commit": git_commit(),
        "device_name": device_name(device),
    }
