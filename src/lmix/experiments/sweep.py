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
Expansion order varies ``seed`` slowest, so a half-finished sweep already holds complete
comparisons for the first seeds.

Concurrency: a run is trained under an exclusive ``flock`` on ``RUN_DIR/.lock`` (holding
"host pid"); another process finding it locked skips the run as busy. The kernel drops the lock
when its holder dies, so a killed sweep never leaves a stale lock behind. Finished runs
(``summary.json``) are skipped; interrupted ones are resumed by ``lmix.experiments.train.train``.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from lmix.experiments.io import atomic_write_json
from lmix.experiments.train import TrainConfig, config_from_sources, load_yaml, train
from lmix.experiments.train.config import RUN_IDENTITY_EXCLUDE, check_keys
from lmix.experiments.train.trainer import build_mixer, ignored_mixer_settings

__all__ = [
    "SweepSpec",
    "Run",
    "RunLock",
    "RunOutcome",
    "load_spec",
    "parse_spec",
    "expand",
    "parse_shard",
    "shard_runs",
    "run_status",
    "run_sweep",
    "format_value",
    "SPEC_KEYS",
]

SPEC_KEYS = ("name", "description", "config", "base", "grid", "include", "runs")
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
    """

    source: str
    name: str
    layers: tuple[dict[str, Any], ...]
    grids: tuple[tuple[tuple[str, tuple[Any, ...]], ...], ...]
    runs: tuple[dict[str, Any], ...]
    varied: tuple[str, ...]


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
    """What happened to a run: status is "trained", "skipped" (already done), "busy" or "failed"."""

    run: Run
    status: str
    seconds: float = 0.0
    summary: dict[str, Any] | None = None
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False)


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
    if not path.is_file():
        raise FileNotFoundError(f"sweep spec {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"sweep spec {str(path)!r} is not valid YAML: {str(err).splitlines()[0]}") from None
    return parse_spec(data, source=str(path), base_dir=path.parent, default_name=path.stem)


def parse_spec(
    data: Any, *, source: str = "<spec>", base_dir: str | os.PathLike = ".", default_name: str = "sweep"
) -> SweepSpec:
    """Validate a spec given as a mapping (what ``yaml.safe_load`` returns)."""
    if not isinstance(data, dict):
        raise ValueError(f"sweep spec {source}: must be a mapping with keys {', '.join(SPEC_KEYS)}")
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"sweep spec {source}: unknown key(s) {unknown}; known keys: {', '.join(SPEC_KEYS)}")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise ValueError(f"sweep spec {source}: name must be a non-empty string, got {name!r}")

    layers: list[dict[str, Any]] = []
    config_files = data.get("config") or []
    if isinstance(config_files, str):
        config_files = [config_files]
    if not isinstance(config_files, list) or not all(isinstance(p, str) for p in config_files):
        raise ValueError(f"sweep spec {source}: config must be a file path or a list of paths, got {config_files!r}")
    for rel in config_files:
        layer = load_yaml(Path(base_dir) / rel)
        _forbid_owned(layer, f"{source}: config {rel}")
        layers.append(layer)
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise ValueError(f"sweep spec {source}: base must be a mapping of settings, got {type(base).__name__}")
    _forbid_owned(base, f"{source}: base")
    layers.append(_check_settings(base, f"sweep spec {source}: base"))

    grid_blocks = data.get("grid")
    if grid_blocks is None:
        grid_blocks = []
    elif isinstance(grid_blocks, dict):
        grid_blocks = [grid_blocks]
    include = data.get("include") or []
    if not isinstance(grid_blocks, list) or not isinstance(include, list):
        raise ValueError(f"sweep spec {source}: grid must be a mapping (or a list of them), include a list of them")
    grids = []
    for label, block in [("grid", b) for b in grid_blocks] + [("include", b) for b in include]:
        grids.append(_parse_grid(block, f"sweep spec {source}: {label}"))

    runs_data = data.get("runs") or []
    if not isinstance(runs_data, list):
        raise ValueError(f"sweep spec {source}: runs must be a list of mappings of settings")
    runs = []
    for i, entry in enumerate(runs_data):
        if not isinstance(entry, dict) or not entry:
            raise ValueError(f"sweep spec {source}: runs[{i}] must be a non-empty mapping of settings, got {entry!r}")
        _forbid_owned(entry, f"{source}: runs[{i}]")
        runs.append(_check_settings(entry, f"sweep spec {source}: runs[{i}]"))

    if not grids and not runs:
        raise ValueError(f"sweep spec {source}: defines no runs; give a non-empty grid (e.g. grid: {{seed: [0, 1]}})")
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
    )


def _forbid_owned(settings: dict[str, Any], where: str) -> None:
    for key in _SWEEP_OWNED:
        if key in settings:
            raise ValueError(f"sweep spec {where}: {key!r} is set by lmix sweep (each run gets OUT/<run name>)")


def _check_settings(settings: dict[str, Any], where: str) -> dict[str, Any]:
    """TrainConfig's key and type check, with the spec location in the message."""
    return check_keys(settings, source=where)


def _parse_grid(block: Any, where: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not isinstance(block, dict) or not block:
        raise ValueError(f"{where}: must be a non-empty mapping of key -> list of values, got {block!r}")
    _forbid_owned(block, where.removeprefix("sweep spec "))
    unknown = sorted(set(block) - set(_KNOWN_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known keys: {', '.join(sorted(_KNOWN_FIELDS))}")
    out = []
    for key, values in block.items():
        if key in _LIST_FIELDS:
            if not isinstance(values, list) or not values or not all(isinstance(v, list) for v in values):
                raise ValueError(
                    f"{where}: {key} takes a list of alternatives, each itself a list, e.g. {key}: [[75, 150, 225]]"
                )
        elif not isinstance(values, list):
            values = [values]
        if not values:
            raise ValueError(f"{where}: {key} has an empty list of values")
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
        raise ValueError(f"--set {clash} would override key(s) that the sweep varies; edit the spec instead")
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
            raise ValueError(f"sweep spec {spec.source}: run {{{shown}}}: {err}") from None
        for key in ignored_mixer_settings(config):
            settings[key] = None  # alpha for 'none' etc.: the same computation, so the same run
        config = config_from_sources(settings)
        resolved = config.to_dict()
        name = "/".join(
            f"{k}={format_value(resolved[k])}" for k in name_keys if resolved[k] is not None or k in _ALWAYS_NAMED
        )
        if name in seen:
            if seen[name] != resolved:
                raise ValueError(f"sweep spec {spec.source}: two different runs map to the folder {name!r}")
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
        raise ValueError(f"unknown model {config.model!r}; known models: {', '.join(list_models())}")
    try:
        from lmix.data import list_datasets
    except ImportError:  # data module not importable: train() will say why
        return
    if config.dataset not in list_datasets():
        raise ValueError(f"unknown dataset {config.dataset!r}; known data sets: {', '.join(list_datasets())}")


# ---------------------------------------------------------------------------------------------
# shards, status, locks
# ---------------------------------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` (1-based, 1 <= i <= N) -> (i, N); ValueError otherwise."""
    parts = str(text).split("/")
    try:
        i, n = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--shard must be i/N with integers 1 <= i <= N (e.g. 1/4), got {text!r}") from None
    if n < 1 or not 1 <= i <= n:
        raise ValueError(f"--shard must be i/N with 1 <= i <= N (shards are numbered from 1), got {text!r}")
    return i, n


def shard_runs(runs: Sequence[Run], shard: tuple[int, int] | None) -> list[Run]:
    """The runs of shard ``(i, N)``: those whose index is ``i - 1`` modulo ``N``."""
    if shard is None:
        return list(runs)
    i, n = shard
    return [r for r in runs if r.index % n == i - 1]


class RunLock:
    """Exclusive, non-blocking lock on a run folder (``flock`` on ``RUN_DIR/.lock``).

    The lock file holds "host pid" of the holder for messages. The kernel releases the lock when
    the holding process exits or is killed, so a lock left by a dead process is simply taken.
    """

    FILENAME = ".lock"

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / self.FILENAME
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False if another open lock holds it."""
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held by this object")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            # The previous holder may have unlinked the file between our open and our flock: then
            # we hold a lock on an orphan inode and must retry on the current file.
            try:
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()  # before unlocking: a waiter then sees a new inode and retries
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    def holder(self) -> str:
        """ "pid N on HOST" of the recorded holder (may be stale if the lock is free)."""
        try:
            host, pid = self.path.read_text().split()
        except (OSError, ValueError):
            return "another process"
        return f"pid {pid} on {host}"

    def is_held_elsewhere(self) -> bool:
        """Whether some other lock holds it right now (takes and drops the lock to find out)."""
        if not self.path.exists():
            return False
        probe = RunLock(self.path.parent)
        fd = os.open(probe.path, os.O_RDWR)  # never create (or delete) in a probe
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


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
    ours = run.config.to_dict()
    diff = sorted(k for k in set(theirs) | set(ours) if k not in RUN_IDENTITY_EXCLUDE and theirs.get(k) != ours.get(k))
    if not diff:
        return None
    return ", ".join(f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in diff[:3])


def run_status(run: Run) -> tuple[str, str]:
    """(status, detail): status is "done", "running", "partial", "todo" or "conflict" (folder holds another run)."""
    d = run.dir
    clash = conflict(run)
    if clash is not None:
        return "conflict", clash
    if (d / "summary.json").is_file():
        try:
            s = json.loads((d / "summary.json").read_text())
            return "done", f"final {s['final_acc']:.2f}%, best {s['best_acc']:.2f}%"
        except (ValueError, KeyError, TypeError):
            return "done", "summary.json unreadable"
    lock = RunLock(d)
    try:
        if lock.is_held_elsewhere():
            return "running", lock.holder()
    except OSError:
        pass
    epochs = _epochs_done(d)
    if epochs or (d / "checkpoint.pt").exists():
        return "partial", f"{epochs}/{run.config.epochs} epochs"
    return "todo", ""


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
def sweep_manifest(spec: SweepSpec, runs: Sequence[Run]) -> dict[str, Any]:
    """The content of ``sweep.json``: deterministic, so concurrent shards write the same file."""
    return {
        "name": spec.name,
        "spec": spec.source,
        "num_runs": len(runs),
        "runs": [{"index": r.index, "name": r.name, "settings": r.settings} for r in runs],
    }


def run_sweep(
    spec: SweepSpec,
    out_dir: str | os.PathLike,
    *,
    shard: tuple[int, int] | None = None,
    overrides: dict[str, Any] | None = None,
    dry_run: bool = False,
    keep_going: bool = False,
    log: Callable[[str], None] = print,
    train_log: Callable[..., None] | None = None,
) -> SweepResult:
    """Expand ``spec`` and train this shard's runs that are not done yet.

    Every run is validated before the first one starts. A failing run stops the sweep (its
    error is raised) unless ``keep_going``; runs locked by another process are skipped as busy.

    Args:
        train_log: the trainer's own log lines (default: dropped; the sweep prints one line per run).
    """
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    runs = expand(spec, out_dir, overrides=overrides)
    mine = shard_runs(runs, shard)
    shard_text = f"shard {shard[0]}/{shard[1]}" if shard else "all shards"
    width = len(str(len(mine)))
    result = SweepResult()
    if dry_run:
        log(f"sweep {spec.name!r}: {len(runs)} runs, {len(mine)} in {shard_text}; out dir {out_dir}")
        for pos, run in enumerate(mine, 1):
            status, detail = run_status(run)
            log(f"[{pos:>{width}}/{len(mine)}] {status:<7s} {run.name}" + (f"  ({detail})" if detail else ""))
        return result

    for run in mine:
        clash = conflict(run)
        if clash is not None:
            raise ValueError(
                f"run folder {str(run.dir)!r} holds a different run ({clash}); use another --out, or vary that "
                "setting in the spec's grid so that the folder names differ"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "sweep.json", sweep_manifest(spec, runs))
    log(f"sweep {spec.name!r}: {len(mine)} of {len(runs)} runs ({shard_text}) in {out_dir}")
    quiet = train_log or (lambda *a, **k: None)
    for pos, run in enumerate(mine, 1):
        prefix = f"[{pos:>{width}}/{len(mine)}] {run.name}:"
        outcome = _run_one(run, quiet)
        result.outcomes.append(outcome)
        if outcome.status == "skipped":
            log(f"{prefix} skip (done), final {outcome.summary['final_acc']:.2f}%")  # type: ignore[index]
        elif outcome.status == "busy":
            log(f"{prefix} busy ({outcome.error}), left to it")
        elif outcome.status == "trained":
            s = outcome.summary or {}
            log(
                f"{prefix} done in {outcome.seconds:.1f}s, final {s['final_acc']:.2f}%, best {s['best_acc']:.2f}%"
                + (
                    f", clean train {s['final_clean_train_acc']:.1f}%"
                    if s.get("final_clean_train_acc") is not None
                    else ""
                )
            )
        else:
            log(f"{prefix} FAILED after {outcome.seconds:.1f}s: {outcome.error}")
            if not keep_going:
                result.seconds = time.perf_counter() - t_start
                assert outcome.exception is not None
                raise outcome.exception
    result.seconds = time.perf_counter() - t_start
    log(
        f"sweep {spec.name!r} ({shard_text}): {result.count('trained')} trained, {result.count('skipped')} already done, "
        f"{result.count('busy')} busy, {result.count('failed')} failed in {result.seconds:.1f}s"
    )
    return result


def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def _run_one(run: Run, train_log: Callable[..., None]) -> RunOutcome:
    summary = _read_summary(run.dir)
    if summary is not None:
        return RunOutcome(run, "skipped", summary=summary)
    lock = RunLock(run.dir)
    if not lock.acquire():
        return RunOutcome(run, "busy", error=lock.holder())
    t0 = time.perf_counter()
    try:
        summary = _read_summary(run.dir)  # finished by another process while we waited for the lock
        if summary is not None:
            return RunOutcome(run, "skipped", summary=summary)
        # train() takes a config it may modify (out); give it a copy so Run stays as expanded
        config = config_from_sources(run.config.to_dict())
        summary = train(config, log=train_log)
        return RunOutcome(run, "trained", seconds=time.perf_counter() - t0, summary=summary)
    except Exception as err:  # noqa: BLE001 - reported per run; re-raised by run_sweep unless keep_going
        message = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
        return RunOutcome(run, "failed", seconds=time.perf_counter() - t0, error=message, exception=err)
    finally:
        lock.release()
        try:
            run.dir.rmdir()  # only succeeds if the run failed before writing anything
        except OSError:
            pass
