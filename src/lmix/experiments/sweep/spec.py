"""Reading and checking a sweep spec (the format: :mod:`lmix.experiments.sweep`)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmix._checks import is_real
from lmix.errors import LmixValueError
from lmix.experiments.attack import parse_eps
from lmix.experiments.io import read_yaml
from lmix.experiments.plan import AnalysisPlan, Group, parse_plan
from lmix.experiments.train import TrainConfig, load_yaml
from lmix.experiments.train.config import check_keys

if TYPE_CHECKING:
    from lmix.experiments.sweep.expand import Run

__all__ = ["SPEC_KEYS", "SweepSpec", "load_spec", "parse_spec", "forbid_owned", "check_plan"]

SPEC_KEYS = ("name", "description", "config", "base", "grid", "include", "runs", "attack_eps", "analysis")
SWEEP_OWNED = ("out",)  # settings the sweep sets itself
KNOWN_FIELDS = tuple(f.name for f in fields(TrainConfig))
# milestones, mix_p: a grid alternative of these is itself a list
LIST_FIELDS = frozenset(f.name for f in fields(TrainConfig) if "list[" in str(f.type))

Grid = tuple[tuple[str, tuple[Any, ...]], ...]  # (key, alternatives) pairs


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, validated sweep spec.

    Attributes:
        source: where it was read from (for messages).
        name: the spec's ``name`` (default: the file's stem).
        layers: settings under every run: the ``config`` file(s), then ``base``.
        grids: the ``grid`` and ``include`` blocks: each a list of (key, alternatives).
        runs: the ``runs`` entries (settings mappings).
        varied: keys set by a grid, include or run entry (they name the run folders).
        attack_eps: FGSM eps in 1/255 of the pixel range to attack every run with after training
            (``attack_eps``; None: no attack).
        analysis: the declared analysis plan (``analysis``; None: none declared). Its groups are
            checked against the runs by :func:`check_plan` when the spec is expanded.
    """

    source: str
    name: str
    layers: tuple[dict[str, Any], ...]
    grids: tuple[Grid, ...]
    runs: tuple[dict[str, Any], ...]
    varied: tuple[str, ...]
    attack_eps: tuple[float, ...] | None = None
    analysis: AnalysisPlan | None = None


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and validate a sweep spec file; LmixValueError on any problem, FileNotFoundError if missing."""
    path = Path(path)
    data = read_yaml(path, what="sweep spec")
    return parse_spec(data, source=str(path), base_dir=path.parent, default_name=path.stem)


def parse_spec(
    data: Any, *, source: str = "<spec>", base_dir: str | os.PathLike = ".", default_name: str = "sweep"
) -> SweepSpec:
    """Validate a spec given as a mapping (what ``yaml.safe_load`` returns)."""
    if not isinstance(data, dict):
        raise LmixValueError(f"sweep spec {source}: must be a mapping with keys {', '.join(SPEC_KEYS)}")
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise LmixValueError(f"sweep spec {source}: unknown key(s) {unknown}; known keys: {', '.join(SPEC_KEYS)}")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise LmixValueError(f"sweep spec {source}: name must be a non-empty string, got {name!r}")
    layers = _parse_layers(data, source, Path(base_dir))
    grids = _parse_grids(data, source)
    runs = _parse_runs(data, source)
    if not grids and not runs:
        raise LmixValueError(
            f"sweep spec {source}: defines no runs; give a non-empty grid (e.g. grid: {{seed: [0, 1]}})"
        )
    varied: list[str] = []
    for keys in [[k for k, _ in g] for g in grids] + [list(r) for r in runs]:
        varied.extend(k for k in keys if k not in varied)
    attack_eps = _parse_attack_eps(data.get("attack_eps"), source)
    analysis = data.get("analysis")
    return SweepSpec(
        source=source,
        name=name,
        layers=layers,
        grids=grids,
        runs=runs,
        varied=tuple(varied),
        attack_eps=attack_eps,
        analysis=None
        if analysis is None
        else parse_plan(analysis, where=f"sweep spec {source}: analysis", attack_eps=attack_eps),
    )


def _parse_layers(data: dict[str, Any], source: str, base_dir: Path) -> tuple[dict[str, Any], ...]:
    """The ``config`` file(s), then ``base``."""
    layers: list[dict[str, Any]] = []
    config_files = data.get("config") or []
    if isinstance(config_files, str):
        config_files = [config_files]
    if not isinstance(config_files, list) or not all(isinstance(p, str) for p in config_files):
        raise LmixValueError(
            f"sweep spec {source}: config must be a file path or a list of paths, got {config_files!r}"
        )
    for rel in config_files:
        layer = load_yaml(base_dir / rel)
        forbid_owned(layer, f"{source}: config {rel}")
        layers.append(layer)
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise LmixValueError(f"sweep spec {source}: base must be a mapping of settings, got {type(base).__name__}")
    forbid_owned(base, f"{source}: base")
    layers.append(check_keys(base, source=f"sweep spec {source}: base", named=True))
    return tuple(layers)


def _parse_grids(data: dict[str, Any], source: str) -> tuple[Grid, ...]:
    """The ``grid`` block(s), then the ``include`` ones."""
    grid_blocks = data.get("grid")
    if grid_blocks is None:
        grid_blocks = []
    elif isinstance(grid_blocks, dict):
        grid_blocks = [grid_blocks]
    include = data.get("include") or []
    if not isinstance(grid_blocks, list) or not isinstance(include, list):
        raise LmixValueError(f"sweep spec {source}: grid must be a mapping (or a list of them), include a list of them")
    labelled = [("grid", b) for b in grid_blocks] + [("include", b) for b in include]
    return tuple(_parse_grid(block, f"sweep spec {source}: {label}") for label, block in labelled)


def _parse_grid(block: Any, where: str) -> Grid:
    if not isinstance(block, dict) or not block:
        raise LmixValueError(f"{where}: must be a non-empty mapping of key -> list of values, got {block!r}")
    forbid_owned(block, where.removeprefix("sweep spec "))
    unknown = sorted(set(block) - set(KNOWN_FIELDS))
    if unknown:
        raise LmixValueError(f"{where}: unknown key(s) {unknown}; known keys: {', '.join(sorted(KNOWN_FIELDS))}")
    out = []
    for key, values in block.items():
        if key in LIST_FIELDS:
            if not isinstance(values, list) or not values or not all(isinstance(v, list) for v in values):
                raise LmixValueError(
                    f"{where}: {key} takes a list of alternatives, each itself a list, e.g. {key}: [[75, 150, 225]]"
                )
        elif not isinstance(values, list):
            values = [values]
        if not values:
            raise LmixValueError(f"{where}: {key} has an empty list of values")
        alternatives = tuple(check_keys({key: v}, source=where, named=True)[key] for v in values)
        out.append((key, alternatives))
    return tuple(out)


def _parse_runs(data: dict[str, Any], source: str) -> tuple[dict[str, Any], ...]:
    runs_data = data.get("runs") or []
    if not isinstance(runs_data, list):
        raise LmixValueError(f"sweep spec {source}: runs must be a list of mappings of settings")
    runs = []
    for i, entry in enumerate(runs_data):
        if not isinstance(entry, dict) or not entry:
            raise LmixValueError(
                f"sweep spec {source}: runs[{i}] must be a non-empty mapping of settings, got {entry!r}"
            )
        forbid_owned(entry, f"{source}: runs[{i}]")
        runs.append(check_keys(entry, source=f"sweep spec {source}: runs[{i}]", named=True))
    return tuple(runs)


def _parse_attack_eps(value: Any, source: str) -> tuple[float, ...] | None:
    """``attack_eps``: a list of eps in 1/255 units (or the same as text, "0,1,2,4,8"), as ``lmix attack --eps``."""
    if value is None:
        return None
    if is_real(value):
        value = [value]
    if isinstance(value, list) and value and all(is_real(v) for v in value):
        text = ",".join(repr(float(v)) for v in value)
    elif isinstance(value, str):
        text = value
    else:
        raise LmixValueError(
            f"sweep spec {source}: attack_eps must be a non-empty list of numbers in 1/255 units, e.g. "
            f"attack_eps: [0, 1, 2, 4, 8], got {value!r}"
        )
    try:
        _, eps_255 = parse_eps(text, units="255")
    except ValueError as err:
        raise LmixValueError(f"sweep spec {source}: attack_eps: {err}") from None
    return tuple(eps_255)


def forbid_owned(settings: dict[str, Any], where: str) -> None:
    """Refuse settings the sweep sets itself (``out``: each run gets its own folder)."""
    for key in SWEEP_OWNED:
        if key in settings:
            raise LmixValueError(f"sweep spec {where}: {key!r} is set by lmix sweep (each run gets OUT/<run name>)")


def check_plan(spec: SweepSpec, runs: Sequence[Run]) -> None:
    """Refuse an analysis plan that names a group or a slope the spec's runs do not have.

    A group is a method with mixing settings; every mixing setting the spec varies that the
    group does not name must be at the method's default (``lmix`` is LMix at k = 1 where the
    spec varies k). ``{slope: k}`` needs LMix at two k or more (FMix counts as k = 0).

    Args:
        runs: the spec's expanded runs (``expand(spec, ...)``, which calls this).

    Raises:
        LmixValueError: one line naming the comparison and what the spec produces instead.
    """
    plan = spec.analysis
    if plan is None:
        return
    from lmix.experiments.train.mixer_config import METHOD_PARAM_KEYS, mixer_from_config, mixer_settings

    varied = [k for k in spec.varied if k in METHOD_PARAM_KEYS]
    effective = [(r.config.method, mixer_settings(mixer_from_config(r.config))) for r in runs]
    for i, comparison in enumerate(plan.comparisons):
        where = f"sweep spec {spec.source}: analysis: comparisons[{i}] ({comparison.label})"
        for group in comparison.groups():
            _check_group(group, effective, varied, where)
        if comparison.kind == "each" and all(_in_group(comparison.b, m, s, varied) for m, s in effective):
            raise LmixValueError(f"{where}: the spec runs no group besides {comparison.b.label}")  # type: ignore[union-attr]
        if comparison.kind == "slope":
            ks = _slope_values(effective, varied)
            if len(ks) < 2:
                raise LmixValueError(
                    f"{where}: needs LMix at two k or more (FMix counts as k = 0); the spec runs k = "
                    + (", ".join(f"{k:g}" for k in ks) or "none")
                )


def _check_group(group: Group, effective: list[tuple[str, dict[str, Any]]], varied: list[str], where: str) -> None:
    """A group the spec's runs have: a method it runs, mixing settings it produces."""
    from lmix.experiments.train.mixer_config import METHOD_PARAM_KEYS

    methods = sorted({m for m, _ in effective})
    if group.method not in methods:
        raise LmixValueError(f"{where}: the spec runs no {group.method!r}; its methods: {', '.join(methods)}")
    for key, _ in group.settings:
        if key not in METHOD_PARAM_KEYS:
            raise LmixValueError(
                f"{where}: {key!r} is not a mixing setting; a group names a method and mixing settings "
                f"({', '.join(METHOD_PARAM_KEYS)})"
            )
    if not any(_in_group(group, m, s, varied) for m, s in effective):
        raise LmixValueError(f"{where}: the spec runs no {group.label} (unnamed varied settings at their defaults)")


def _in_group(group: Group, method: str, settings: dict[str, Any], varied: list[str]) -> bool:
    """Whether a run (its method and mixer settings) is in ``group``."""
    if method != group.method:
        return False
    named = dict(group.settings)
    defaults = _defaults(method)
    return all(_same(settings.get(k), named[k] if k in named else defaults.get(k)) for k in {*named, *varied})


def _slope_values(effective: list[tuple[str, dict[str, Any]]], varied: list[str]) -> list[float]:
    """The k values of LMix runs with the other varied settings at their defaults (FMix as k = 0)."""
    others = [k for k in varied if k != "k"]
    ks = {float(s["k"]) for m, s in effective if m == "lmix" and _in_group(Group("lmix"), m, s, others)}
    if any(_in_group(Group("fmix"), m, s, others) for m, s in effective):
        ks.add(0.0)
    return sorted(ks)


def _defaults(method: str) -> dict[str, Any]:
    from lmix.experiments.train.mixer_config import mixer_settings
    from lmix.mixing import create_mixer

    return mixer_settings(create_mixer(method))


def _same(a: Any, b: Any) -> bool:
    if is_real(a) and is_real(b):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b
