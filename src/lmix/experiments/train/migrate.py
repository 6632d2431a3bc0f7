"""Bring run records up to date: every mixing setting stated in ``config.yaml``, the mixer named
in ``summary.json``.

Runs saved before the trainer resolved its mixer's settings left a setting ``null`` when the
method's default was used (``k: null`` for LMix's ``k = 1``). :func:`migrate_run` rewrites such
a run's ``config.yaml`` with the values its mixer is built with, as the trainer now writes them
(``lmix.experiments.train.mixer_config``), and adds ``"mixer": Mixer.describe()`` to its
``summary.json``; ``metrics.jsonl`` and every measured number are left alone. The values are
those of the installed lmix's mixers, so migrate records whose code had the same mixer defaults.
Both files are written atomically under the run folder's lock; running it again changes nothing.

    python -m lmix.experiments.train.migrate results/
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from lmix.errors import LmixError, LmixValueError
from lmix.experiments.io import RunLock, atomic_write_json, atomic_write_text, read_yaml
from lmix.experiments.train.config import config_from_sources
from lmix.experiments.train.mixer_config import mixer_from_config, mixer_settings

__all__ = ["migrate_run", "migrate_records", "main"]


def migrate_run(run_dir: str | Path) -> list[str]:
    """Update one run folder's ``config.yaml`` and ``summary.json`` (see the module docstring).

    Returns:
        The names of the files rewritten (none when the record is up to date).

    Raises:
        FileNotFoundError: the folder has no ``config.yaml``.
        LmixValueError: the folder is in use, or its ``config.yaml`` or ``summary.json`` is invalid.
        lmix.experiments.io.WriteError: a file could not be written (it is left as it was).
    """
    run_dir = Path(run_dir)
    lock = RunLock(run_dir)
    if not lock.acquire():
        raise LmixValueError(f"{str(run_dir)!r} is in use by {lock.holder()}; migrate it when that run is done")
    try:
        return _migrate_locked(run_dir)
    finally:
        lock.release()


def _migrate_locked(run_dir: Path) -> list[str]:
    config_path, summary_path = run_dir / "config.yaml", run_dir / "summary.json"
    saved = read_yaml(config_path, what="config file")
    if not isinstance(saved, dict):
        raise LmixValueError(f"{str(config_path)!r} must hold a mapping of settings, got {type(saved).__name__}")
    try:
        mixer = mixer_from_config(config_from_sources(saved))
    except LmixValueError as err:
        raise LmixValueError(f"{str(config_path)!r}: {err}") from None
    rewritten = []
    updated = _with_settings(saved, mixer_settings(mixer))
    if updated != saved:
        atomic_write_text(config_path, yaml.safe_dump(updated, sort_keys=False))
        rewritten.append(config_path.name)
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except ValueError:
            raise LmixValueError(f"{str(summary_path)!r} is not valid JSON") from None
        if isinstance(summary, dict) and "mixer" not in summary:
            atomic_write_json(summary_path, {**summary, "mixer": mixer.describe()})
            rewritten.append(summary_path.name)
    return rewritten


def _with_settings(saved: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """``saved`` with the resolved mixing settings, in its own key order; a setting it lacks is
    added only when it has a value (an older record without ``loss_scale`` keeps lacking it)."""
    out = dict(saved)
    for key, value in settings.items():
        if key in out or value is not None:
            out[key] = value
    return out


def migrate_records(root: str | Path) -> dict[Path, list[str]]:
    """Migrate every run folder (a folder holding ``config.yaml``) under ``root``.

    Returns:
        ``{run folder: files rewritten}`` for every run folder, in path order.
    """
    root = Path(root)
    if not root.is_dir():
        raise LmixValueError(f"{str(root)!r} is not a folder of run records")
    return {path.parent: migrate_run(path.parent) for path in sorted(root.rglob("config.yaml"))}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lmix.experiments.train.migrate ROOT...``: one line per rewritten run, then a count."""
    parser = argparse.ArgumentParser(
        prog="python -m lmix.experiments.train.migrate",
        description="State every mixing setting in the config.yaml of the runs under ROOT and name "
        "their mixer in summary.json. Metrics are left alone; running it again changes nothing.",
    )
    parser.add_argument("roots", nargs="+", metavar="ROOT", help="a folder of run records, e.g. results/")
    args = parser.parse_args(argv)
    try:
        done = {run: files for root in args.roots for run, files in migrate_records(root).items()}
    except (LmixError, OSError) as err:  # OSError: a file could not be written (WriteError)
        print(f"migrate: {err}", file=sys.stderr)
        return 2 if isinstance(err, LmixError) else 1
    for run, files in done.items():
        if files:
            print(f"{run}: {', '.join(files)}")
    print(f"{sum(1 for files in done.values() if files)} of {len(done)} run folders updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
