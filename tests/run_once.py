"""Expensive test set-up (a multi-process training run) done once per test run, also when
pytest-xdist hands a module's tests to several workers (each would run a module fixture)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock  # a dependency of torch


def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, produce: Callable[[Path], None]) -> Path:
    """The folder in which ``produce(folder)`` ran, once for all workers of this test run.

    A worker that finds the folder done reuses it; one that finds it missing or failed runs
    ``produce`` itself, so a failure shows in every test that needs it.
    """
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker has its own base folder inside the run's; without xdist the base
    # folder is the run's (its parent holds earlier runs).
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not (folder / ".done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            produce(folder)
            (folder / ".done").touch()
    return folder
