"""Sweeps: a grid of training runs from one YAML spec, each run in its own folder.

Spec format (``lmix sweep SPEC.yaml --out DIR``)::

    name: table1                 # optional label
    description: ...             # optional free text
    config: ../paper/table1_cifar10_preact_resnet18.yaml   # optional: TrainConfig YAML file(s),
                                 # relative to the spec; layered under ``base``
    base:                        # TrainConfig settings common to every run
      epochs: 300
      milestones: [75, 150, 225]
    grid:                        # key -> list of alternatives; the cartesian product is expanded
      model: [preact_resnet18, wrn28_10]
      method: [none, mixup, cutmix, fmix, lmix]
      seed: [0, 1, 2, 3, 4]
    include:                     # optional: more grids (same format), added to ``grid``'s runs
      - {model: [preact_resnet18], method: [cutout, patchup], seed: [0, 1, 2, 3, 4]}
    runs:                        # optional: single runs, each a mapping of settings (no expansion)
      - {model: preact_resnet18, method: lmix+mixup, seed: 0}
    attack_eps: [0, 1, 2, 4, 8]  # optional: FGSM after training (1/255 units) -> RUN/fgsm.json

``grid`` may also be a list of grids. Every key is a ``TrainConfig`` field (``lmix train --help``);
a grid value is a list of alternatives (a scalar is shorthand for one alternative; for list-valued
fields such as ``milestones`` each alternative is itself a list). ``out`` is set by the sweep.

Later layers win: config file(s) < base < grid/include/runs entry < ``--set`` overrides.
Mixing settings the run's method does not take (e.g. ``alpha`` for ``none``) are dropped, and
runs that become identical are run once.

Run folders are ``DIR/dataset=.../model=.../method=.../<other varied keys>/seed=...``: dataset,
model, method and seed always, plus every other key that a grid, include or run entry sets
(alphabetically; keys whose value is unset are left out). Names depend only on the spec, so
they are stable across invocations and machines.

Sharding (``--shard i/N``, 1-based: ``1/N`` .. ``N/N``): run number ``j`` (0-based, in expansion
order) belongs to shard ``j % N + 1``, so shards are disjoint, cover the sweep, and are balanced.
``--shard auto`` reads a Slurm job array's task id (0-based) and count (:func:`parse_shard`).
Expansion order varies ``seed`` slowest, so a half-finished sweep already holds complete
comparisons for the first seeds.

Concurrency: a run is trained under an exclusive ``flock`` on ``RUN_DIR/.lock`` (holding
"host pid"); another process finding it locked skips the run as busy. The kernel drops the lock
when its holder dies, so a killed sweep never leaves a stale lock behind. Finished runs
(``summary.json``) are skipped; interrupted ones are resumed by ``lmix.experiments.train.train``.

Parallel runs (``--jobs N``): N job processes at once (:func:`run_sweep`), each training one run
under its lock. Failed runs get ``RUN/failed.json`` and no summary; the sweep goes on, and the next
sweep retries them.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from lmix.data.loaders import available_cpus
from lmix.errors import LmixValueError
from lmix.experiments.io import FolderLock, atomic_write_json, read_yaml
from lmix.experiments.train import TrainConfig, config_from_sources, load_yaml, train
from lmix.experiments.train.config import RUN_IDENTITY_EXCLUDE, check_keys, run_identity
from lmix.experiments.train.trainer import build_mixer, ignored_mixer_settings

__all__ = [
    "SweepSpec",
    "Run",
    "RunLock",
    "RunOutcome",
    "SweepInterrupted",
    "SweepResult",
    "available_cpus",
    "resolve_gpus",
    "failed_line",
    "read_failed",
    "load_spec",
    "parse_spec",
    "expand",
    "parse_shard",
    "shard_runs",
    "run_status",
    "run_sweep",
    "format_value",
    "SPEC_KEYS",
    "FAILED_JSON",
]

SPEC_KEYS = ("name", "description", "config", "base", "grid", "include", "runs", "attack_eps")
FAILED_JSON = "failed.json"
SUMMARY_JSON = "summary.json"
SHARD_ENV = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")
_ALWAYS_NAMED = ("dataset", "model", "method")
_SWEEP_OWNED = ("out",)
_KNOWN_FIELDS = tuple(f.name for f in fields(TrainConfig))
_LIST_FIELDS = frozenset(
    f.name for f in fields(TrainConfig) if "list[" in str(f.type)
)  # milestones, mix_p: a grid alternative is itself a list


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
    """

    source: str
    name: str
    layers: tuple[dict[str, Any], ...]
    grids: tuple[tuple[tuple[str, tuple[Any, ...]], ...], ...]
    runs: tuple[dict[str, Any], ...]
    varied: tuple[str, ...]
    attack_eps: tuple[float, ...] | None = None


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


@dataclass
class RunOutcome:
    """What happened to a run.

    ``status``: "trained", "skipped" (trained before), "busy" (locked by another process), "failed"
    or "interrupted" (stopped by a signal at its last checkpoint). ``attacked``: FGSM ran this
    time and ``fgsm`` holds its record.
    """

    run: Run
    status: str
    seconds: float = 0.0
    summary: dict[str, Any] | None = None
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False)
    fgsm: dict[str, Any] | None = None
    attacked: bool = False


@dataclass
class SweepResult:
    """Outcomes of one ``run_sweep`` call (this shard's runs only)."""

    outcomes: list[RunOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)


# ---------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------
def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and validate a sweep spec file (see the module docstring); ValueError on any problem."""
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

    layers: list[dict[str, Any]] = []
    config_files = data.get("config") or []
    if isinstance(config_files, str):
        config_files = [config_files]
    if not isinstance(config_files, list) or not all(isinstance(p, str) for p in config_files):
        raise LmixValueError(
            f"sweep spec {source}: config must be a file path or a list of paths, got {config_files!r}"
        )
    for rel in config_files:
        layer = load_yaml(Path(base_dir) / rel)
        _forbid_owned(layer, f"{source}: config {rel}")
        layers.append(layer)
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise LmixValueError(f"sweep spec {source}: base must be a mapping of settings, got {type(base).__name__}")
    _forbid_owned(base, f"{source}: base")
    layers.append(_check_settings(base, f"sweep spec {source}: base"))

    grid_blocks = data.get("grid")
    if grid_blocks is None:
        grid_blocks = []
    elif isinstance(grid_blocks, dict):
        grid_blocks = [grid_blocks]
    include = data.get("include") or []
    if not isinstance(grid_blocks, list) or not isinstance(include, list):
        raise LmixValueError(f"sweep spec {source}: grid must be a mapping (or a list of them), include a list of them")
    grids = []
    for label, block in [("grid", b) for b in grid_blocks] + [("include", b) for b in include]:
        grids.append(_parse_grid(block, f"sweep spec {source}: {label}"))

    runs_data = data.get("runs") or []
    if not isinstance(runs_data, list):
        raise LmixValueError(f"sweep spec {source}: runs must be a list of mappings of settings")
    runs = []
    for i, entry in enumerate(runs_data):
        if not isinstance(entry, dict) or not entry:
            raise LmixValueError(
                f"sweep spec {source}: runs[{i}] must be a non-empty mapping of settings, got {entry!r}"
            )
        _forbid_owned(entry, f"{source}: runs[{i}]")
        runs.append(_check_settings(entry, f"sweep spec {source}: runs[{i}]"))

    if not grids and not runs:
        raise LmixValueError(
            f"sweep spec {source}: defines no runs; give a non-empty grid (e.g. grid: {{seed: [0, 1]}})"
        )
    varied: list[str] = []
    for keys in [[k for k, _ in g] for g in grids] + [list(r) for r in runs]:
        varied.extend(k for k in keys if k not in varied)
    return SweepSpec(
        source=source,
        name=name,
        layers=tuple(layers),
        grids=tuple(grids),
        runs=tuple(runs),
        varied=tuple(varied),
        attack_eps=_parse_attack_eps(data.get("attack_eps"), source),
    )


def _parse_attack_eps(value: Any, source: str) -> tuple[float, ...] | None:
    """``attack_eps``: a list of eps in 1/255 units (or the same as text, "0,1,2,4,8"), as ``lmix attack --eps``."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        text = ",".join(repr(float(v)) for v in value)
    elif isinstance(value, str):
        text = value
    else:
        raise LmixValueError(
            f"sweep spec {source}: attack_eps must be a non-empty list of numbers in 1/255 units, e.g. "
            f"attack_eps: [0, 1, 2, 4, 8], got {value!r}"
        )
    from lmix.experiments.attack import parse_eps

    try:
        _, eps_255 = parse_eps(text, units="255")
    except ValueError as err:
        raise LmixValueError(f"sweep spec {source}: attack_eps: {err}") from None
    return tuple(eps_255)


def _forbid_owned(settings: dict[str, Any], where: str) -> None:
    for key in _SWEEP_OWNED:
        if key in settings:
            raise LmixValueError(f"sweep spec {where}: {key!r} is set by lmix sweep (each run gets OUT/<run name>)")


def _check_settings(settings: dict[str, Any], where: str) -> dict[str, Any]:
    """TrainConfig's key and type check, with the spec location in the message."""
    return check_keys(settings, source=where)


def _parse_grid(block: Any, where: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not isinstance(block, dict) or not block:
        raise LmixValueError(f"{where}: must be a non-empty mapping of key -> list of values, got {block!r}")
    _forbid_owned(block, where.removeprefix("sweep spec "))
    unknown = sorted(set(block) - set(_KNOWN_FIELDS))
    if unknown:
        raise LmixValueError(f"{where}: unknown key(s) {unknown}; known keys: {', '.join(sorted(_KNOWN_FIELDS))}")
    out = []
    for key, values in block.items():
        if key in _LIST_FIELDS:
            if not isinstance(values, list) or not values or not all(isinstance(v, list) for v in values):
                raise LmixValueError(
                    f"{where}: {key} takes a list of alternatives, each itself a list, e.g. {key}: [[75, 150, 225]]"
                )
        elif not isinstance(values, list):
            values = [values]
        if not values:
            raise LmixValueError(f"{where}: {key} has an empty list of values")
        alternatives = tuple(check_keys({key: v}, source=where)[key] for v in values)
        out.append((key, alternatives))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# expansion
# ---------------------------------------------------------------------------------------------
def format_value(value: Any) -> str:
    """A setting as it appears in a run folder name: readable, no path separators."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, tuple)):
        text = ",".join(format_value(v) for v in value)
    else:
        text = str(value)
    return "".join("_" if (c in "/\\" or c.isspace()) else c for c in text) or "_"


def _combos(grid: tuple[tuple[str, tuple[Any, ...]], ...]) -> Iterable[dict[str, Any]]:
    # seed varies slowest, so an interrupted sweep holds complete comparisons for its first seeds
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
        ValueError: an invalid setting in any run (nothing has run yet), or a clash of names.
    """
    overrides = check_keys(dict(overrides or {}), source="--set")
    _forbid_owned(overrides, "--set")
    clash = sorted(set(overrides) & set(spec.varied))
    if clash:
        raise LmixValueError(f"--set {clash} would override key(s) that the sweep varies; edit the spec instead")
    base: dict[str, Any] = {}
    for layer in spec.layers:
        base.update(layer)
    entries = [combo for grid in spec.grids for combo in _combos(grid)] + [dict(r) for r in spec.runs]
    # seed slowest across all blocks too (stable: the spec's order within a seed)
    entries.sort(key=lambda e: _seed_order({**base, **e}.get("seed", 0)))
    out_dir = Path(out_dir)
    name_keys = [k for k in spec.varied if k not in _ALWAYS_NAMED and k != "seed"]
    name_keys = [*_ALWAYS_NAMED, *sorted(name_keys), "seed"]

    runs: list[Run] = []
    seen: dict[str, dict[str, Any]] = {}
    for entry in entries:
        settings = {**base, **entry, **overrides}
        try:
            config = config_from_sources(settings)
            build_mixer(config, seed=0)  # unknown method, or a parameter value it rejects
            _check_registries(config)
        except ValueError as err:
            shown = ", ".join(f"{k}={format_value(v)}" for k, v in entry.items())
            raise LmixValueError(f"sweep spec {spec.source}: run {{{shown}}}: {err}") from None
        for key in ignored_mixer_settings(config):
            settings[key] = None  # alpha for 'none' etc.: the same computation, so the same run
        config = config_from_sources(settings)
        resolved = config.to_dict()
        name = "/".join(
            f"{k}={format_value(resolved[k])}" for k in name_keys if resolved[k] is not None or k in _ALWAYS_NAMED
        )
        if name in seen:
            if seen[name] != resolved:
                raise LmixValueError(f"sweep spec {spec.source}: two different runs map to the folder {name!r}")
            continue
        seen[name] = resolved
        config.out = str(out_dir / name)
        runs.append(Run(index=len(runs), name=name, settings=settings, config=config))
    return runs


def _seed_order(seed: Any) -> tuple[int, Any]:
    return (0, seed) if isinstance(seed, int) else (1, str(seed))  # invalid seeds are reported by expand


def _check_registries(config: TrainConfig) -> None:
    from lmix.models import list_models

    if config.model not in list_models():
        raise LmixValueError(f"unknown model {config.model!r}; known models: {', '.join(list_models())}")
    try:
        from lmix.data import list_datasets
    except ImportError:  # data module not importable: train() will say why
        return
    if config.dataset not in list_datasets():
        raise LmixValueError(f"unknown dataset {config.dataset!r}; known data sets: {', '.join(list_datasets())}")


# ---------------------------------------------------------------------------------------------
# shards, status, locks
# ---------------------------------------------------------------------------------------------
def parse_shard(text: str, *, environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``"i/N"`` (1-based, 1 <= i <= N) -> (i, N); ``"auto"``: from a Slurm job array; ValueError otherwise.

    ``auto`` reads ``SLURM_ARRAY_TASK_ID`` and ``SLURM_ARRAY_TASK_COUNT`` from ``environ``
    (default ``os.environ``). The task id is taken as 0-based; when Slurm also sets
    ``SLURM_ARRAY_TASK_MIN`` (and ``SLURM_ARRAY_TASK_STEP``), the index is
    ``(ID - MIN) // STEP``, so ``--array=1-8`` and ``--array=0-14:2`` work too. Task index ``t``
    runs shard ``t + 1`` of ``COUNT``.
    """
    if str(text).strip().lower() == "auto":
        return _shard_from_env(os.environ if environ is None else environ)
    parts = str(text).split("/")
    try:
        i, n = (int(p) for p in parts)
    except ValueError:
        raise LmixValueError(
            f"--shard must be i/N with integers 1 <= i <= N (e.g. 1/4) or auto (a Slurm job array), got {text!r}"
        ) from None
    if n < 1 or not 1 <= i <= n:
        raise LmixValueError(f"--shard must be i/N with 1 <= i <= N (shards are numbered from 1), got {text!r}")
    return i, n


def _shard_from_env(environ: Mapping[str, str]) -> tuple[int, int]:
    missing = [k for k in SHARD_ENV if not environ.get(k, "").strip()]
    if missing:
        raise LmixValueError(
            f"--shard auto needs a Slurm job array ({' and '.join(missing)} not set; submit with sbatch --array=0-N); "
            "elsewhere use --shard i/N"
        )
    values = {}
    for key in (*SHARD_ENV, "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP"):
        raw = environ.get(key, "").strip()
        if not raw:
            continue
        try:
            values[key] = int(raw)
        except ValueError:
            raise LmixValueError(f"--shard auto: {key}={raw!r} is not an integer") from None
    task, count = values["SLURM_ARRAY_TASK_ID"], values["SLURM_ARRAY_TASK_COUNT"]
    low, step = values.get("SLURM_ARRAY_TASK_MIN", 0), values.get("SLURM_ARRAY_TASK_STEP", 1)
    if step < 1:
        raise LmixValueError(f"--shard auto: SLURM_ARRAY_TASK_STEP must be >= 1, got {step}")
    index, rest = divmod(task - low, step)
    if count < 1 or rest or not 0 <= index < count:
        raise LmixValueError(
            f"--shard auto: task id {task} is not one of the {count} array tasks "
            f"(SLURM_ARRAY_TASK_MIN {low}, step {step}); use --array=0-{max(count, 1) - 1}"
        )
    return index + 1, count


def shard_runs(runs: Sequence[Run], shard: tuple[int, int] | None) -> list[Run]:
    """The runs of shard ``(i, N)``: those whose index is ``i - 1`` modulo ``N``."""
    if shard is None:
        return list(runs)
    i, n = shard
    return [r for r in runs if r.index % n == i - 1]


class RunLock(FolderLock):
    """Exclusive, non-blocking lock on a run folder (``flock`` on ``RUN_DIR/.lock``).

    The lock file holds "host pid" of the holder for messages. The kernel releases the lock when
    the holding process exits or is killed, so a lock left by a dead process is simply taken.
    """

    FILENAME = ".lock"

    def acquire(self) -> bool:
        """Take the lock (creating the run folder); False if another open lock holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return super().acquire()

    def is_held_elsewhere(self) -> bool:
        """Whether some other lock holds it right now (takes and drops the lock to find out)."""
        if not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDWR)  # never create (or delete) in a probe
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False


def _epochs_done(run_dir: Path) -> int:
    try:
        return sum(1 for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip())
    except OSError:
        return 0


def conflict(run: Run) -> str | None:
    """How the run folder's saved ``config.yaml`` differs from ``run`` (None: no folder, or the same run).

    Two specs sharing an out dir must give different runs different folder names; a clash would
    otherwise only surface as train()'s error when the run's turn comes.
    """
    path = run.dir / "config.yaml"
    if not path.is_file():
        return None
    try:
        theirs = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return "its config.yaml is unreadable"
    if not isinstance(theirs, dict):
        return "its config.yaml is not a mapping"
    # Compare identities, not raw dicts: a folder saved before a setting existed still matches.
    theirs, ours = run_identity(theirs), run_identity(run.config.to_dict())
    diff = sorted(k for k in set(theirs) | set(ours) if k not in RUN_IDENTITY_EXCLUDE and theirs.get(k) != ours.get(k))
    if not diff:
        return None
    return ", ".join(f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in diff[:3])


def run_status(run: Run, *, attack_eps: Sequence[float] | None = None) -> tuple[str, str]:
    """(status, detail): status is "done", "running", "failed", "partial", "todo" or "conflict" (folder holds another run).

    ``attack_eps`` (1/255 units): a done run whose ``fgsm.json`` does not have these eps says so in its detail.
    """
    d = run.dir
    clash = conflict(run)
    if clash is not None:
        return "conflict", clash
    if (d / SUMMARY_JSON).is_file():
        pending = ", FGSM to do" if attack_eps and not _has_fgsm(d, attack_eps) else ""
        try:
            s = json.loads((d / SUMMARY_JSON).read_text())
            return "done", f"final {s['final_acc']:.2f}%, best {s['best_acc']:.2f}%{pending}"
        except (ValueError, KeyError, TypeError):
            return "done", f"summary.json unreadable{pending}"
    lock = RunLock(d)
    try:
        if lock.is_held_elsewhere():
            return "running", lock.holder()
    except OSError:
        pass
    epochs = _epochs_done(d)
    failed = read_failed(d)
    if failed is not None:
        return "failed", f"{failed.get('error', 'unknown error')} ({epochs}/{run.config.epochs} epochs)"
    if epochs or (d / "checkpoint.pt").exists():
        return "partial", f"{epochs}/{run.config.epochs} epochs"
    return "todo", ""


def read_failed(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run's ``failed.json`` (why its last attempt failed), or None if there is none."""
    try:
        record = json.loads((Path(run_dir) / FAILED_JSON).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"error": f"{FAILED_JSON} unreadable"}
    return record if isinstance(record, dict) else {"error": f"{FAILED_JSON} is not a mapping"}


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
class SweepInterrupted(Exception):
    """The sweep was stopped by SIGINT or SIGTERM; runs in flight stopped at their last checkpoint."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def sweep_manifest(spec: SweepSpec, runs: Sequence[Run]) -> dict[str, Any]:
    """The content of ``sweep.json``: deterministic, so concurrent shards write the same file."""
    manifest: dict[str, Any] = {
        "name": spec.name,
        "spec": spec.source,
        "num_runs": len(runs),
        "runs": [{"index": r.index, "name": r.name, "settings": r.settings} for r in runs],
    }
    if spec.attack_eps is not None:
        manifest["attack_eps"] = list(spec.attack_eps)
    return manifest


def run_sweep(
    spec: SweepSpec,
    out_dir: str | os.PathLike,
    *,
    shard: tuple[int, int] | None = None,
    overrides: dict[str, Any] | None = None,
    dry_run: bool = False,
    keep_going: bool = True,
    jobs: int = 1,
    threads: int | None = None,
    gpus: Sequence[str] = (),
    log: Callable[[str], None] = print,
    train_log: Callable[..., None] | None = None,
) -> SweepResult:
    """Expand ``spec`` and train this shard's runs that are not done yet.

    Every run is validated before the first one starts. A run whose training raises (a
    diverged loss, a crash) is marked failed: ``RUN/failed.json`` holds the reason and the run
    has no ``summary.json``; the sweep goes on with the other runs (``keep_going=False``: no
    new run starts after the first failure). A later sweep retries failed runs, resuming from their
    last checkpoint. Runs locked by another process are skipped as busy. With the spec's
    ``attack_eps``, each finished run is attacked with FGSM and gets ``RUN/fgsm.json``.

    Args:
        jobs: runs trained at once, each in its own Python process (1: one after the other, in
            this process).
        threads: torch CPU threads of each job's process (default with ``jobs > 1``: the
            CPUs available divided by ``jobs``, at least 1; with ``jobs == 1`` the caller's
            setting is kept).
        gpus: with ``jobs > 1``, the GPUs (``CUDA_VISIBLE_DEVICES`` entries) to spread the job
            processes over: each job sees one of them, the one running the fewest jobs. Runs
            whose ``device`` is ``cpu`` or a fixed ``cuda:N`` keep their device. See
            :func:`resolve_gpus`. Empty (default): every job sees the caller's devices.
        train_log: the trainer's own log lines (default: dropped; the sweep prints one line per run).
            With ``jobs > 1`` any non-None value lets the job processes print their trainer output.

    Raises:
        SweepInterrupted: SIGINT or SIGTERM arrived while jobs ran (``jobs > 1``).
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise LmixValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise LmixValueError(f"threads must be an integer >= 1, got {threads!r}")
    gpus = [str(g) for g in gpus]
    if any(not g.strip() or "," in g for g in gpus) or len(set(gpus)) != len(gpus):
        raise LmixValueError(f"gpus must be distinct, non-empty device ids, got {gpus!r}")
    if gpus and jobs == 1:
        raise LmixValueError(
            "gpus spread job processes over GPUs and needs jobs > 1; to pin a sweep to one GPU set device=cuda:N"
        )
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    runs = expand(spec, out_dir, overrides=overrides)
    mine = shard_runs(runs, shard)
    shard_text = f"shard {shard[0]}/{shard[1]}" if shard else "all shards"
    width = len(str(len(mine)))
    attack = _attack_plan(spec.attack_eps)
    result = SweepResult()
    if dry_run:
        log(f"sweep {spec.name!r}: {len(runs)} runs, {len(mine)} in {shard_text}; out dir {out_dir}")
        for pos, run in enumerate(mine, 1):
            status, detail = run_status(run, attack_eps=spec.attack_eps)
            log(f"[{pos:>{width}}/{len(mine)}] {status:<7s} {run.name}" + (f"  ({detail})" if detail else ""))
        return result

    for run in mine:
        clash = conflict(run)
        if clash is not None:
            raise LmixValueError(
                f"run folder {str(run.dir)!r} holds a different run ({clash}); use another --out, or vary that "
                "setting in the spec's grid so that the folder names differ"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "sweep.json", sweep_manifest(spec, runs))
    parallel = jobs > 1  # job processes even if this shard leaves one run: --threads applies to them
    jobs = min(jobs, max(1, len(mine)))
    job_text = f", {jobs} at once" if parallel else ""
    log(f"sweep {spec.name!r}: {len(mine)} of {len(runs)} runs ({shard_text}{job_text}) in {out_dir}")
    prefixes = {run.index: f"[{pos:>{width}}/{len(mine)}] {run.name}:" for pos, run in enumerate(mine, 1)}

    def report(outcome: RunOutcome) -> None:
        result.outcomes.append(outcome)
        log(_outcome_line(prefixes[outcome.run.index], outcome))

    if not parallel:
        quiet = train_log or (lambda *a, **k: None)
        for run in mine:
            outcome = _run_one(run, quiet, attack)
            report(outcome)
            if outcome.status == "failed" and not keep_going:
                break
    else:
        if threads is None:
            threads = max(1, available_cpus() // jobs)
        todo = []
        for run in mine:  # finished (or busy) runs need no process of their own
            if _read_summary(run.dir) is not None and not _needs_attack(run.dir, attack):
                report(RunOutcome(run, "skipped", summary=_read_summary(run.dir)))
            elif _held_elsewhere(run.dir):
                report(RunOutcome(run, "busy", error=RunLock(run.dir).holder()))
            else:
                todo.append(run)
        _run_parallel(
            todo,
            jobs=jobs,
            threads=threads,
            gpus=gpus,
            attack=attack,
            verbose=train_log is not None,
            keep_going=keep_going,
            on_start=lambda run, pid, gpu: log(
                f"{prefixes[run.index]} start (pid {pid}, {threads} thread(s)"
                + ("" if gpu is None else f", GPU {gpu}")
                + ")"
            ),
            on_done=report,
        )
    result.seconds = time.perf_counter() - t_start
    log(
        f"sweep {spec.name!r} ({shard_text}): {result.count('trained')} trained, {result.count('skipped')} already done, "
        f"{result.count('busy')} busy, {result.count('failed')} failed"
        + (f", {sum(o.attacked for o in result.outcomes)} attacked (FGSM)" if attack is not None else "")
        + f" in {result.seconds:.1f}s"
    )
    return result


def _held_elsewhere(run_dir: Path) -> bool:
    try:
        return RunLock(run_dir).is_held_elsewhere()
    except OSError:  # the holder removed its lock file just now: free (the job process checks again)
        return False


def failed_line(result: SweepResult, *, limit: int = 8) -> str | None:
    """One line naming the failed runs of ``result`` and why (None when none failed)."""
    failed = [o for o in result.outcomes if o.status == "failed"]
    if not failed:
        return None
    shown = "; ".join(f"{o.run.name} ({_short(o.error or 'unknown error')})" for o in failed[:limit])
    more = f"; and {len(failed) - limit} more" if len(failed) > limit else ""
    return (
        f"{len(failed)} run{'s' if len(failed) > 1 else ''} failed: {shown}{more}. Each failed run's "
        f"{FAILED_JSON} says why; re-run the same command to retry them"
    )


def _short(text: str, n: int = 100) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _outcome_line(prefix: str, outcome: RunOutcome) -> str:
    s = outcome.summary or {}
    fgsm = ""
    if outcome.fgsm is not None:
        fgsm = (
            "; FGSM acc "
            + ", ".join(f"{a:.1f}" for a in outcome.fgsm.get("acc", []))
            + f" at eps {','.join(f'{e:g}' for e in outcome.fgsm.get('eps_255', []))}/255"
        )
    if outcome.status == "skipped":
        if outcome.attacked:
            return f"{prefix} trained before, attacked in {outcome.seconds:.1f}s{fgsm}"
        return f"{prefix} skip (done), final {s.get('final_acc', float('nan')):.2f}%"
    if outcome.status == "busy":
        return f"{prefix} busy ({outcome.error}), left to it"
    if outcome.status == "trained":
        return (
            f"{prefix} done in {outcome.seconds:.1f}s, final {s['final_acc']:.2f}%, best {s['best_acc']:.2f}%"
            + (f", clean train {s['final_clean_train_acc']:.1f}%" if s.get("final_clean_train_acc") is not None else "")
            + fgsm
        )
    if outcome.status == "interrupted":
        return f"{prefix} interrupted after {outcome.seconds:.1f}s ({outcome.error}); resumes on the next sweep"
    return f"{prefix} FAILED after {outcome.seconds:.1f}s: {outcome.error}"


def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / SUMMARY_JSON).read_text())
    except (OSError, ValueError):
        return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _mark_failed(run: Run, err: BaseException | None, message: str, seconds: float) -> None:
    """Write ``RUN/failed.json`` (atomically): why the run failed, for the report, ``--dry-run`` and people."""
    atomic_write_json(
        run.dir / FAILED_JSON,
        {
            "run": run.name,
            "error": message,
            "error_type": type(err).__name__ if err is not None else None,
            "diverged": type(err).__name__ == "TrainingDiverged",
            "epochs_done": _epochs_done(run.dir),
            "epochs": run.config.epochs,
            "seconds": round(seconds, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        },
    )


def _clear_failed(run_dir: Path) -> None:
    try:
        (run_dir / FAILED_JSON).unlink()
    except FileNotFoundError:
        pass


# FGSM after training (the spec's attack_eps) -------------------------------------------------
@dataclass(frozen=True)
class _Attack:
    eps: tuple[float, ...]  # fractions of the [0, 1] pixel range
    eps_255: tuple[float, ...]


def _attack_plan(eps_255: Sequence[float] | None) -> _Attack | None:
    if eps_255 is None:
        return None
    return _Attack(eps=tuple(v / 255 for v in eps_255), eps_255=tuple(float(v) for v in eps_255))


def _has_fgsm(run_dir: Path, eps_255: Sequence[float]) -> bool:
    """The run has an ``fgsm.json`` of a whole test split at exactly these eps (1/255 units)."""
    from lmix.experiments.attack import read_fgsm

    record = read_fgsm(run_dir)
    if record is None or record.get("limit") is not None:
        return False
    have = record.get("eps_255")
    return (
        isinstance(have, list)
        and len(have) == len(eps_255) == len(record["acc"])
        and all(isinstance(a, (int, float)) and abs(a - b) <= 1e-9 for a, b in zip(have, eps_255))
    )


def _needs_attack(run_dir: Path, attack: _Attack | None) -> bool:
    return attack is not None and not _has_fgsm(run_dir, attack.eps_255)


def _attack(run: Run, attack: _Attack) -> dict[str, Any]:
    from lmix.experiments.attack import attack_run, write_fgsm

    record = attack_run(
        run.dir,
        list(attack.eps),
        eps_255=list(attack.eps_255),
        device=run.config.device,
        data_root=run.config.data_root,
        download=run.config.download,
    )
    write_fgsm(run.dir, record)
    return record


# one run ---------------------------------------------------------------------------------------
def _run_one(run: Run, train_log: Callable[..., None], attack: _Attack | None = None) -> RunOutcome:
    """Train ``run`` unless it is done (or locked elsewhere), then attack it if ``attack`` asks for it.

    A training error becomes a "failed" outcome with ``RUN/failed.json``; an attack error a
    "failed" outcome without it (the trained run is valid; the next sweep retries the attack).
    """
    summary = _read_summary(run.dir)
    if summary is not None and not _needs_attack(run.dir, attack):
        return RunOutcome(run, "skipped", summary=summary)
    lock = RunLock(run.dir)
    if not lock.acquire():
        return RunOutcome(run, "busy", error=lock.holder())
    t0 = time.perf_counter()
    try:
        summary = _read_summary(run.dir)  # finished by another process while we waited for the lock
        status = "skipped"
        if summary is None:
            _clear_failed(run.dir)  # a retry: it is not failed while it runs
            # train() takes a config it may modify (out); give it a copy so Run stays as expanded
            config = config_from_sources(run.config.to_dict())
            try:
                summary = train(config, log=train_log)
            except Exception as err:  # noqa: BLE001 - a failed run is recorded; the sweep goes on
                message = _first_line(err)
                try:
                    _mark_failed(run, err, message, time.perf_counter() - t0)
                except OSError as write_err:  # e.g. the disk that stopped the run is still full
                    message += f" (and {FAILED_JSON} could not be written: {_first_line(write_err)})"
                return RunOutcome(run, "failed", seconds=time.perf_counter() - t0, error=message, exception=err)
            status = "trained"
        if not _needs_attack(run.dir, attack):
            return RunOutcome(run, status, seconds=time.perf_counter() - t0, summary=summary)
        assert attack is not None
        try:
            record = _attack(run, attack)
        except Exception as err:  # noqa: BLE001 - the run stays trained; a re-run retries the attack
            return RunOutcome(
                run,
                "failed",
                seconds=time.perf_counter() - t0,
                summary=summary,
                error=f"FGSM attack after training: {_first_line(err)}",
                exception=err,
            )
        return RunOutcome(run, status, seconds=time.perf_counter() - t0, summary=summary, fgsm=record, attacked=True)
    finally:
        lock.release()
        try:
            run.dir.rmdir()  # only succeeds if the run failed before writing anything
        except OSError:
            pass


# many runs at once -----------------------------------------------------------------------------
# Each job is a fresh ``python`` process (subprocess, not a multiprocessing pool): a run that
# crashes the interpreter (out of memory, a segfault in a kernel) fails alone instead of breaking
# a pool; thread counts are fixed through the environment before torch starts; no state (CUDA
# caches, compiled graphs, global RNGs) carries from one run to the next; and each job sits in
# its own session, so one Ctrl-C reaches the jobs exactly once, forwarded by the sweep.
_CHILD_CODE = "import sys; from lmix.experiments.sweep import _child_main; sys.exit(_child_main(sys.argv[1:]))"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _child_env(threads: int, gpu: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    if gpu is not None:  # the job's "cuda" is this GPU
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def resolve_gpus(
    text: str, *, environ: Mapping[str, str] | None = None, device_count: Callable[[], int] | None = None
) -> list[str]:
    """The GPUs ``lmix sweep --jobs N --gpus TEXT`` spreads its job processes over.

    Args:
        text: ``"auto"``: the visible GPUs (the entries of ``CUDA_VISIBLE_DEVICES`` when it is set,
            else ``0 .. torch.cuda.device_count() - 1``) when there are two or more, else none;
            ``"none"``: none (every job sees the caller's devices); or a comma-separated list of
            ids as ``CUDA_VISIBLE_DEVICES`` takes them (``"0,1,3"``, GPU UUIDs).
        environ: the environment to read (default ``os.environ``).
        device_count: counts the GPUs (default ``torch.cuda.device_count``, which does not
            create a CUDA context).

    Raises:
        ValueError: an empty or repeated id in a list.
    """
    text = text.strip()
    if text.lower() == "none":
        return []
    if text.lower() == "auto":
        env = os.environ if environ is None else environ
        visible = env.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            ids = [v.strip() for v in visible.split(",") if v.strip()]
        else:
            if device_count is None:
                import torch

                device_count = torch.cuda.device_count
            ids = [str(i) for i in range(device_count())]
        return ids if len(ids) > 1 else []
    ids = [v.strip() for v in text.split(",")]
    if any(not v for v in ids) or len(set(ids)) != len(ids):
        raise LmixValueError(f"--gpus must be auto, none or a list of distinct GPU ids such as 0,1,3; got {text!r}")
    return ids


def _spreads(run: Run) -> bool:
    """Whether a run may be placed on a GPU of the sweep's choosing (its device is auto or plain cuda)."""
    return str(run.config.device) in ("auto", "cuda")


def _outcome_to_json(outcome: RunOutcome) -> dict[str, Any]:
    return {
        "status": outcome.status,
        "seconds": outcome.seconds,
        "summary": outcome.summary,
        "error": outcome.error,
        "fgsm": outcome.fgsm,
        "attacked": outcome.attacked,
    }


def _child_main(argv: Sequence[str]) -> int:
    """Entry point of one job process: ``JOB.json OUTCOME.json`` (written by :func:`_run_parallel`)."""
    job_path, outcome_path = argv
    job = json.loads(Path(job_path).read_text())
    import torch

    torch.set_num_threads(int(job["threads"]))
    run = Run(
        index=int(job["index"]),
        name=job["name"],
        settings=job["settings"],
        config=config_from_sources(job["config"]),
    )
    attack = _attack_plan(job["attack_eps"])
    train_log = print if job["verbose"] else (lambda *a, **k: None)
    try:
        outcome = _run_one(run, train_log, attack)
    except KeyboardInterrupt as err:  # the trainer's TrainingInterrupted carries 130 or 143
        return int(getattr(err, "exit_code", 128 + signal.SIGINT))
    atomic_write_json(outcome_path, _outcome_to_json(outcome))
    return 0


@dataclass
class _Job:
    run: Run
    proc: subprocess.Popen
    outcome_path: Path
    stderr_path: Path
    t0: float
    gpu: str | None = None


def _run_parallel(
    runs: Sequence[Run],
    *,
    jobs: int,
    threads: int,
    gpus: Sequence[str] = (),
    attack: _Attack | None,
    verbose: bool,
    keep_going: bool,
    on_start: Callable[[Run, int, str | None], None],
    on_done: Callable[[RunOutcome], None],
) -> None:
    """Train ``runs`` in up to ``jobs`` processes at once; ``on_done`` gets each outcome as it finishes.

    With ``gpus``, each job that may move (see ``_spreads``) sees the GPU running the fewest jobs.
    """
    queue = list(runs)
    running: list[_Job] = []
    stop: list[int] = []  # signals received (handlers only record them)
    failure: RunOutcome | None = None

    def on_signal(signum: int, _frame: Any) -> None:
        stop.append(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, on_signal) for s in _STOP_SIGNALS}
    forwarded = 0
    with tempfile.TemporaryDirectory(prefix="lmix-sweep-") as tmp:
        try:
            while queue or running:
                while queue and len(running) < jobs and not stop and failure is None:
                    run = queue.pop(0)
                    gpu = None
                    if gpus and _spreads(run):
                        load = {g: sum(j.gpu == g for j in running) for g in gpus}
                        gpu = min(gpus, key=lambda g: load[g])  # ties: the first listed
                    running.append(_start_job(run, Path(tmp), threads=threads, gpu=gpu, attack=attack, verbose=verbose))
                    on_start(run, running[-1].proc.pid, gpu)
                if not running:
                    break
                if len(stop) > forwarded:
                    # the first signal is passed on (the jobs checkpoint and exit); a second one kills them
                    sig = stop[forwarded] if forwarded == 0 else signal.SIGKILL
                    forwarded = len(stop)
                    for job in running:
                        _signal(job.proc, sig)
                time.sleep(0.05)
                for job in [j for j in running if j.proc.poll() is not None]:
                    running.remove(job)
                    outcome = _finish_job(job, stopping=bool(stop))
                    on_done(outcome)
                    if outcome.status == "failed" and not keep_going and failure is None:
                        failure = outcome
        finally:
            for job in running:  # only on an unexpected error in this loop: leave no orphans
                _signal(job.proc, signal.SIGKILL)
                job.proc.wait()
            for s, handler in previous.items():
                signal.signal(s, handler)
    if stop:
        name = signal.Signals(stop[0]).name
        raise SweepInterrupted(
            stop[0],
            f"lmix sweep: interrupted by {name}; runs in flight stopped at their last checkpoint; "
            "re-run the same command to resume",
        )


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _start_job(
    run: Run, tmp: Path, *, threads: int, gpu: str | None = None, attack: _Attack | None, verbose: bool
) -> _Job:
    stem = tmp / f"job{run.index}"
    job_path, outcome_path, stderr_path = (stem.with_suffix(s) for s in (".json", ".out.json", ".err"))
    job_path.write_text(
        json.dumps(
            {
                "index": run.index,
                "name": run.name,
                "settings": run.settings,
                "config": run.config.to_dict(),
                "attack_eps": None if attack is None else list(attack.eps_255),
                "threads": threads,
                "verbose": verbose,
            }
        )
    )
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD_CODE, str(job_path), str(outcome_path)],
            env=_child_env(threads, gpu),
            stdin=subprocess.DEVNULL,
            stdout=None if verbose else subprocess.DEVNULL,
            stderr=None if verbose else err,
            start_new_session=True,
        )
    return _Job(run, proc, outcome_path, stderr_path, time.perf_counter(), gpu)


def _finish_job(job: _Job, *, stopping: bool) -> RunOutcome:
    run, rc, seconds = job.run, job.proc.returncode, time.perf_counter() - job.t0
    try:
        data = json.loads(job.outcome_path.read_text())
    except (OSError, ValueError):
        data = None
    if data is not None:
        return RunOutcome(
            run,
            data["status"],
            seconds=float(data["seconds"]),
            summary=data["summary"],
            error=data["error"],
            fgsm=data["fgsm"],
            attacked=bool(data["attacked"]),
        )
    if stopping and rc in (128 + signal.SIGINT, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL):
        return RunOutcome(run, "interrupted", seconds=seconds, error=f"exit code {rc}")
    # The process died without an outcome (killed, out of memory, a crash in native code).
    message = _last_line(job.stderr_path) or f"the job process exited with code {rc}"
    if rc is not None and rc < 0:
        message = f"the job process was killed by {signal.Signals(-rc).name}" + (f": {message}" if message else "")
    lock = RunLock(run.dir)
    try:
        if _read_summary(run.dir) is None and lock.acquire():
            try:
                _mark_failed(run, None, message, seconds)
            finally:
                lock.release()
    except OSError as err:
        message += f" (and {FAILED_JSON} could not be written: {_first_line(err)})"
    return RunOutcome(run, "failed", seconds=seconds, error=message)


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""
