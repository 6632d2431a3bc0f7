"""A spec's runs: every combination of its grids plus its single runs, validated, named and deduplicated."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmix.data import list_datasets
from lmix.errors import LmixValueError
from lmix.experiments.sweep.spec import Grid, SweepSpec, check_plan, forbid_owned
from lmix.experiments.train import TrainConfig, config_from_sources
from lmix.experiments.train.config import check_keys
from lmix.experiments.train.mixer_config import ignored_mixer_settings, mixer_from_config
from lmix.experiments.train.trainer import check_input_kind
from lmix.models import list_models

__all__ = ["Run", "expand", "format_value"]

ALWAYS_NAMED = ("dataset", "model", "method")  # in every run folder's name, before the varied keys


@dataclass(frozen=True)
class Run:
    """One expanded run.

    Attributes:
        index: position in expansion order (0-based; decides the shard).
        name: folder relative to the sweep's out dir, e.g. ``dataset=digits/model=simple_cnn/method=lmix/seed=0``.
        settings: the run's TrainConfig settings (all layers merged; ``out`` excluded).
        config: the validated TrainConfig, ``out`` set to the run's folder.
    """

    index: int
    name: str
    settings: dict[str, Any]
    config: TrainConfig

    @property
    def dir(self) -> Path:
        return Path(self.config.out)  # type: ignore[arg-type]


def format_value(value: Any) -> str:
    """A setting as it appears in a run folder name: readable, no path separators."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, tuple)):
        text = ",".join(format_value(v) for v in value)
    else:
        text = str(value)
    return "".join("_" if (c in "/\\" or c.isspace()) else c for c in text) or "_"


def grid_combinations(grid: Grid) -> Iterable[dict[str, Any]]:
    """Every combination of a grid's alternatives, ``seed`` varying slowest."""
    # seed slowest: an interrupted sweep holds complete comparisons for its first seeds
    keys = sorted((k for k, _ in grid), key=lambda k: k != "seed")
    values = dict(grid)
    for combo in itertools.product(*(values[k] for k in keys)):
        yield dict(zip(keys, combo, strict=True))


def expand(spec: SweepSpec, out_dir: str | os.PathLike, *, overrides: dict[str, Any] | None = None) -> list[Run]:
    """All runs of ``spec`` under ``out_dir``, validated, deduplicated, in expansion order.

    Args:
        overrides: settings applied to every run last (``--set``); they may not touch a key the
            spec varies (that would merge runs).

    Raises:
        LmixValueError: an invalid setting in any run (nothing has run yet), a clash of names, or an
            analysis plan naming a group the runs do not have.
    """
    overrides = check_keys(dict(overrides or {}), source="--set", named=True)
    forbid_owned(overrides, "--set")
    clash = sorted(set(overrides) & set(spec.varied))
    if clash:
        raise LmixValueError(f"--set {clash} would override key(s) that the sweep varies; edit the spec instead")
    base: dict[str, Any] = {}
    for layer in spec.layers:
        base.update(layer)
    entries = [combo for grid in spec.grids for combo in grid_combinations(grid)] + [dict(r) for r in spec.runs]
    # seed slowest across all blocks too (stable: the spec's order within a seed)
    entries.sort(key=lambda e: _seed_order({**base, **e}.get("seed", 0)))
    out_dir = Path(out_dir)
    name_keys = [k for k in spec.varied if k not in ALWAYS_NAMED and k != "seed"]
    name_keys = [*ALWAYS_NAMED, *sorted(name_keys), "seed"]

    runs: list[Run] = []
    seen: dict[str, dict[str, Any]] = {}
    for entry in entries:
        config, settings = _entry_config(spec, {**base, **entry, **overrides}, entry)
        resolved = config.to_dict()
        name = "/".join(
            f"{k}={format_value(resolved[k])}" for k in name_keys if resolved[k] is not None or k in ALWAYS_NAMED
        )
        if name in seen:
            if seen[name] != resolved:
                raise LmixValueError(f"sweep spec {spec.source}: two different runs map to the folder {name!r}")
            continue
        seen[name] = resolved
        config.out = str(out_dir / name)
        runs.append(Run(index=len(runs), name=name, settings=settings, config=config))
    check_plan(spec, runs)  # a declared analysis must name groups these runs have
    return runs


def _entry_config(
    spec: SweepSpec, settings: dict[str, Any], entry: dict[str, Any]
) -> tuple[TrainConfig, dict[str, Any]]:
    """The run's validated config and settings, less the mixing settings its method ignores."""
    try:
        config = config_from_sources(settings)
        mixer_from_config(config)  # unknown method, or a parameter value it rejects
        _check_registries(config)
    except ValueError as err:
        shown = ", ".join(f"{k}={format_value(v)}" for k, v in entry.items())
        raise LmixValueError(f"sweep spec {spec.source}: run {{{shown}}}: {err}") from None
    for key in ignored_mixer_settings(config):
        settings[key] = None  # alpha for 'none' etc.: the same computation, so the same run
    return config_from_sources(settings), settings


def _seed_order(seed: Any) -> tuple[int, Any]:
    return (0, seed) if isinstance(seed, int) else (1, str(seed))  # invalid seeds are reported by expand


def _check_registries(config: TrainConfig) -> None:
    if config.model not in list_models():
        raise LmixValueError(f"unknown model {config.model!r}; known models: {', '.join(list_models())}")
    if config.dataset not in list_datasets():
        raise LmixValueError(f"unknown dataset {config.dataset!r}; known data sets: {', '.join(list_datasets())}")
    check_input_kind(config)  # an image model on time series, or the other way round
