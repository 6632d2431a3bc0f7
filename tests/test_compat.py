"""Deprecated import paths (lmix 0.1's ``lmix.train``, ``lmix.sweep``, ...) keep working for one release."""

from __future__ import annotations

import importlib
import pickle
import sys
import warnings

import pytest

import lmix
from lmix import _compat


def _forget_aliases() -> None:
    for name in [m for m in sys.modules if _compat.new_name(m) is not None]:
        del sys.modules[name]
    for name in _compat.MOVED:
        lmix.__dict__.pop(name, None)


@pytest.fixture(autouse=True)
def fresh_aliases():
    _forget_aliases()
    yield
    _forget_aliases()


@pytest.mark.parametrize("name", sorted(_compat.MOVED))
def test_old_module_is_the_new_one_with_a_warning(name):
    with pytest.warns(DeprecationWarning, match=rf"lmix\.{name} is deprecated: it moved to lmix\.experiments\.{name}"):
        old = importlib.import_module(f"lmix.{name}")
    assert old is importlib.import_module(f"lmix.experiments.{name}")


def test_submodules_and_names_keep_their_identity():
    from lmix.experiments.train.config import TrainConfig

    with pytest.warns(DeprecationWarning) as record:
        from lmix.commands.train import run as old_run
        from lmix.train.config import TrainConfig as OldTrainConfig
    assert OldTrainConfig is TrainConfig
    assert old_run is importlib.import_module("lmix.experiments.commands.train").run
    warned = {str(w.message).split(" ", 1)[0] for w in record}
    assert {"lmix.train", "lmix.train.config", "lmix.commands", "lmix.commands.train"} <= warned
    # A pickle written by lmix 0.1 names the old module.
    assert pickle.loads(b"clmix.train.config\nTrainConfig\n.") is TrainConfig


def test_warning_points_at_the_importing_line():
    with pytest.warns(DeprecationWarning) as record:
        import lmix.metrics  # noqa: F401
    assert record[0].filename == __file__
    with pytest.warns(DeprecationWarning) as record:
        lmix.paper  # noqa: B018  (attribute access on the package, no import statement)
    assert record[0].filename == __file__


def test_each_old_name_warns_once():
    with pytest.warns(DeprecationWarning):
        import lmix.io  # noqa: F401
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import lmix.io  # noqa: F401, F811

        lmix.io  # noqa: B018


def test_names_that_never_existed_still_fail():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("lmix.nothing")
    with pytest.warns(DeprecationWarning), pytest.raises(ModuleNotFoundError, match="lmix.experiments.train.nothing"):
        importlib.import_module("lmix.train.nothing")
    assert _compat.new_name("lmix.mixing") is None
    assert _compat.new_name("lmix.report.render") == "lmix.experiments.report.render"


def test_installed_once():
    _compat.install()
    _compat.install()
    assert sum(isinstance(f, _compat._AliasFinder) for f in sys.meta_path) == 1


def test_old_module_path_runs_as_a_script():
    """``python -m lmix.cli`` (the 0.1 way to run the CLI) still runs it, with the deprecation warning."""
    import subprocess
    import sys

    import lmix

    proc = subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", "-m", "lmix.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"lmix {lmix.__version__}"
    assert "lmix.cli is deprecated: it moved to lmix.experiments.cli" in proc.stderr
