"""Deprecated import paths of the experiment system, kept for one release.

Up to lmix 0.1 the experiment system lived next to the library: ``lmix.train``, ``lmix.sweep``,
``lmix.report``, ``lmix.attack``, ``lmix.paper``, ``lmix.metrics``, ``lmix.io``, ``lmix.viz``,
``lmix.cli`` and ``lmix.commands``. In 0.2 it moved to ``lmix.experiments.*``. A meta-path
finder maps every old name, submodules included (``lmix.train.config``), to the module at its
new place: the *same* module object, so classes, ``isinstance`` and old pickles keep working.
Each old name warns once with a ``DeprecationWarning``; nothing is imported until an old name
is, so ``import lmix`` stays free of the harness's dependencies. The aliases go in lmix 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED", "REMOVED_IN", "import_moved", "install", "new_name"]

MOVED = frozenset({"attack", "cli", "commands", "io", "metrics", "paper", "report", "sweep", "train", "viz"})
REMOVED_IN = "0.3"


def new_name(fullname: str) -> str | None:
    """``lmix.train.config`` -> ``lmix.experiments.train.config``; None for a name that did not move."""
    parts = fullname.split(".")
    if len(parts) < 2 or parts[0] != "lmix" or parts[1] not in MOVED:
        return None
    return ".".join(["lmix", "experiments", *parts[1:]])


def _message(old: str, new: str) -> str:
    return f"{old} is deprecated: it moved to {new} in lmix 0.2, and the old name goes in lmix {REMOVED_IN}"


def import_moved(name: str) -> ModuleType:
    """``lmix.<name>`` reached as an attribute of ``lmix``: warn at the caller's line, return the module."""
    old, new = f"lmix.{name}", f"lmix.experiments.{name}"
    module = importlib.import_module(new)  # its own warnings, if any, are not silenced
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        importlib.import_module(old)  # registers the alias: only the alias' own warning is silenced here
    warnings.warn(_message(old, new), DeprecationWarning, stacklevel=3)
    return module


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        # stacklevel 2: the import machinery's own frames are skipped, so this points at the
        # user's import statement.
        warnings.warn(_message(spec.name, self.target), DeprecationWarning, stacklevel=2)
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        pass  # already executed under its new name

    def get_code(self, fullname: str):  # noqa: ANN201 - a code object or None, as runpy expects
        """The moved module's code, so that ``python -m lmix.cli`` runs as ``python -m lmix.experiments.cli``."""
        warnings.warn(_message(fullname, self.target), DeprecationWarning, stacklevel=2)
        spec = importlib.util.find_spec(self.target)
        loader = None if spec is None else spec.loader
        get_code = getattr(loader, "get_code", None)
        return None if get_code is None else get_code(self.target)

    def is_package(self, fullname: str) -> bool:
        spec = importlib.util.find_spec(self.target)
        return spec is not None and spec.submodule_search_locations is not None


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        moved_to = new_name(fullname)
        if moved_to is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(moved_to))


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
