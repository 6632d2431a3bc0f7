"""The files of a run folder, read back and checked: the records that ``lmix train``, ``lmix sweep``
and ``lmix attack`` leave behind and that ``lmix report`` and ``lmix attack`` read.

A run folder (``lmix train --out RUN``) holds ``config.yaml``, ``metrics.jsonl`` (one row per
epoch), ``checkpoint.pt`` and, once finished, ``summary.json``; the run lock ``.lock`` while a
process works on it; ``failed.json`` where the run's last attempt failed (written by ``lmix train``
when training diverged and by ``lmix sweep`` for any failure: :mod:`lmix.experiments.train.failures`);
``fgsm.json`` and ``fgsm.png`` once attacked. A sweep's folder holds ``sweep.json``,
its expanded runs (and the spec's declared analysis plan, where it has one), and while job
processes run, their scratch folder ``.lmix-sweep-*`` (never a run folder).

Each ``load_*`` reader returns None when its file is missing and raises :class:`RecordError`
(an ``LmixValueError`` naming the file and what is wrong with it) when the file is there but
cannot be used: not text, not valid JSON or YAML, truncated, a value of the wrong type, NaN or infinity, an
accuracy outside [0, 100], a ``config.yaml`` that ``lmix train`` would refuse (a key that is not one of its
settings, a value or a combination of settings it refuses before training). Extra keys are allowed in the
other records. Readers never write.

A finished run (:func:`read_finished`) needs ``summary.json``, ``config.yaml`` and ``metrics.jsonl``
(one row per epoch): without any of them its number cannot be traced to its settings and its
training. ``checkpoint.pt`` (the published records ship without it) and ``fgsm.json`` are optional.
Its ``config.yaml`` must agree with every setting its ``summary.json`` records (identity, seed,
device, precision, the mixer's settings, the model's number of parameters): a config edited after
the run would otherwise put the run's number in another group's row.
:func:`divergence` applies :func:`lmix.experiments.divergence.loss_problem` to every epoch's row:
``lmix report`` and ``lmix sweep`` judge a diverged run by the same rule as the trainer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmix._checks import is_finite_real, is_integer
from lmix.errors import LmixError, LmixValueError
from lmix.experiments.divergence import LOSS_KEYS, loss_problem
from lmix.experiments.io import FAILED_JSON, RunLock, WriteError, atomic_write_json, printable, read_yaml
from lmix.experiments.plan import AnalysisPlan, parse_plan

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = [
    "SUMMARY_JSON",
    "CONFIG_YAML",
    "METRICS_JSONL",
    "CHECKPOINT",
    "FAILED_JSON",
    "FGSM_JSON",
    "FGSM_PNG",
    "SWEEP_JSON",
    "SWEEP_SCRATCH_PREFIX",
    "RUN_FILES",
    "FINISHED_RUN_FILES",
    "RecordError",
    "FinishedRun",
    "read_finished",
    "divergence",
    "load_summary",
    "load_config",
    "load_metrics",
    "load_fgsm",
    "load_failed",
    "load_sweep",
    "load_sweep_plan",
    "is_sweep_manifest",
    "sweep_manifest_name",
    "read_fgsm",
    "write_fgsm",
    "check_writable",
    "check_run_dir",
    "read_checkpoint",
    "trained_model",
]

SUMMARY_JSON = "summary.json"
CONFIG_YAML = "config.yaml"
METRICS_JSONL = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
FGSM_JSON = "fgsm.json"
FGSM_PNG = "fgsm.png"
SWEEP_JSON = "sweep.json"
# The scratch folder of a sweep's job processes inside its output folder (``.lmix-sweep-XXXX``):
# never a run folder, removed by the sweep that made it, or by the next one if that one was killed.
SWEEP_SCRATCH_PREFIX = ".lmix-sweep-"
# What a finished run must hold; checkpoint.pt (not published) and fgsm.json (an attack) are optional.
FINISHED_RUN_FILES = (SUMMARY_JSON, CONFIG_YAML, METRICS_JSONL)


def is_sweep_manifest(name: str) -> bool:
    """Whether a file name is a sweep's manifest: ``sweep.json``, or ``sweep-NAME.json`` when another
    spec's sweep already wrote ``sweep.json`` into the same output folder."""
    return name == SWEEP_JSON or (name.startswith("sweep-") and name.endswith(".json"))


def sweep_manifest_name(folder: str | os.PathLike, spec_name: str) -> str:
    """The manifest file a sweep of ``spec_name`` writes into ``folder``: ``sweep.json``, unless that
    one belongs to another spec (sweeps sharing an output folder, e.g. an ablation beside Table 1's
    runs), then ``sweep-<spec_name>.json``; so each spec's runs and analysis plan are kept."""
    existing = _manifest_name(Path(folder) / SWEEP_JSON)
    if existing is None or existing == spec_name:
        return SWEEP_JSON
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in spec_name)
    return f"sweep-{safe}.json"


def _manifest_name(path: Path) -> str | None:
    try:
        name = json.loads(path.read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


# A folder holding any of these is a run folder.
RUN_FILES = frozenset({SUMMARY_JSON, FAILED_JSON, CONFIG_YAML, METRICS_JSONL, CHECKPOINT, FGSM_JSON, RunLock.FILENAME})
_IDENTITY = ("dataset", "model", "method")
_MAX_DEPTH = 32  # deeper nesting in a record is damage (or a self-referencing YAML anchor), not data


class RecordError(LmixValueError):
    """A record file that is there but cannot be used.

    Attributes:
        path: the file.
        problem: what is wrong with it, one line (``"not valid JSON (line 1, column 9)"``).
    """

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = Path(path)
        # one printable line whatever the record held (a key may contain a newline)
        self.problem = printable(problem)
        super().__init__(f"{self.path}: {self.problem}")

    @property
    def file(self) -> str:
        """The file's name (``summary.json``)."""
        return self.path.name


# ---------------------------------------------------------------------------------------------
# reading a file
# ---------------------------------------------------------------------------------------------
_ABSENT = object()  # what a reader finds where the file does not exist


def _bytes(path: Path) -> bytes | object:
    """The file's bytes (``_ABSENT`` if it does not exist); RecordError if it cannot be read or is empty."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _ABSENT
    except OSError as err:
        raise RecordError(path, f"cannot be read ({err.strerror or type(err).__name__})") from None
    if not data.strip():
        raise RecordError(path, "is empty (truncated?)")
    return data


def _text(path: Path) -> str | object:
    """The file's text (``_ABSENT`` if it does not exist); RecordError if it is unreadable, empty or not UTF-8."""
    data = _bytes(path)
    if data is _ABSENT:
        return _ABSENT
    try:
        return data.decode("utf-8")  # type: ignore[union-attr]
    except UnicodeDecodeError:
        raise RecordError(path, "is not text (UTF-8)") from None


def _load_json(path: Path) -> Any:
    """The file's JSON document (``_ABSENT`` if it does not exist); RecordError if it is not JSON."""
    text = _text(path)
    if text is _ABSENT:
        return _ABSENT
    try:
        return json.loads(text)  # type: ignore[arg-type]
    except json.JSONDecodeError as err:
        raise RecordError(
            path, f"is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}; truncated?)"
        ) from None
    except RecursionError:
        raise RecordError(path, f"nests deeper than {_MAX_DEPTH} levels") from None


def _json_mapping(path: Path) -> dict[str, Any] | None:
    """The file's JSON mapping; None if the file does not exist."""
    document = _load_json(path)
    return None if document is _ABSENT else _mapping(path, document)


def _mapping(path: Path, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(path, f"must hold a mapping, got {_kind(value)}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise RecordError(path, f"has a key that is not text: {bad[0]!r}")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _plain_record(path: Path, record: dict[str, Any], within: str = "", *, finite: bool = True) -> None:
    """Every value of ``record`` is plain data; a problem names its key (``lr``, ``epoch 3: test_loss``).

    ``finite=False``: NaN and infinity are allowed (a failed run may record the loss that stopped it).
    """
    for key, value in record.items():
        _plain(path, f"{within}{key}", value, finite=finite)


def _plain(path: Path, key: str, value: Any, depth: int = 0, *, finite: bool = True) -> None:
    """``value`` is plain data (text, finite numbers, booleans, null, lists, mappings with text keys)."""
    if depth > _MAX_DEPTH:
        raise RecordError(path, f"{key} nests deeper than {_MAX_DEPTH} levels")
    if finite and isinstance(value, float) and not math.isfinite(value):  # nor would report.json be valid JSON
        raise RecordError(path, f"{key} is {value}, not a finite number")
    if isinstance(value, list):
        for v in value:
            _plain(path, key, v, depth + 1, finite=finite)
    elif isinstance(value, dict):
        for k, v in _mapping(path, value).items():
            _plain(path, f"{key}.{k}", v, depth + 1, finite=finite)
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise RecordError(
            path, f"{key} is a {type(value).__name__}; run records hold text, numbers, lists and mappings"
        )


# ---------------------------------------------------------------------------------------------
# checking a record's values
# ---------------------------------------------------------------------------------------------
def _accuracy(path: Path, key: str, value: Any) -> None:
    if not is_finite_real(value) or not 0 <= value <= 100:
        raise RecordError(path, f"{key} must be an accuracy in percent (a number in [0, 100]), got {value!r}")


def _check(path: Path, record: dict[str, Any], key: str, check: Callable[[Any], bool], allowed: str) -> None:
    """An optional key: absent, null, or passing ``check``."""
    value = record.get(key)
    if value is not None and not check(value):
        raise RecordError(path, f"{key} must be {allowed} (or null), got {value!r}")


def _count(value: Any) -> bool:
    return is_integer(value) and value >= 0


def _identity(path: Path, record: dict[str, Any]) -> None:
    for key in _IDENTITY:
        _check(path, record, key, lambda v: isinstance(v, str) and v.strip() != "", "a name")
    _check(path, record, "seed", is_integer, "an integer")


# ---------------------------------------------------------------------------------------------
# the records
# ---------------------------------------------------------------------------------------------
def load_summary(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A finished run's ``summary.json``: ``final_acc`` (and ``best_acc``, ``final_clean_train_acc``
    where present) in percent, ``epochs``, the run's identity; None if there is none."""
    path = Path(run_dir) / SUMMARY_JSON
    summary = _json_mapping(path)
    if summary is None:
        return None
    if "final_acc" not in summary:
        raise RecordError(path, "has no final_acc")
    _accuracy(path, "final_acc", summary["final_acc"])
    for key in ("best_acc", "final_clean_train_acc"):
        if summary.get(key) is not None:
            _accuracy(path, key, summary[key])
    for key in ("epochs", "best_epoch", "num_params"):
        _check(path, summary, key, _count, "a whole number >= 0")
    _check(path, summary, "mixer", lambda v: isinstance(v, dict), "a mapping of the mixer's settings")
    for key in ("device", "amp"):
        _check(path, summary, key, lambda v: isinstance(v, str), "text")
    _identity(path, summary)
    _plain_record(path, summary)
    return summary


def load_config(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run's ``config.yaml`` (the TrainConfig the trainer saved) as a mapping; None if there is none.

    Every key must be a setting of ``lmix train``, and the whole a config it accepts (:func:`_trainer_accepts`).
    """
    read = _read_config(Path(run_dir) / CONFIG_YAML)
    return None if read is None else read[0]


def _read_config(path: Path) -> tuple[dict[str, Any], Any] | None:
    """``(config.yaml as a mapping, the TrainConfig the trainer reads from it)``; None if there is none."""
    if not path.exists():
        return None
    try:
        config = read_yaml(path, what=CONFIG_YAML)
    except FileNotFoundError:
        raise RecordError(path, "is not a file") from None
    except LmixError as err:
        raise RecordError(path, _after_path(str(err), path)) from None
    except OSError as err:
        raise RecordError(path, f"cannot be read ({err.strerror or type(err).__name__})") from None
    except RecursionError:
        raise RecordError(path, f"nests deeper than {_MAX_DEPTH} levels") from None
    if config is None:
        raise RecordError(path, "is empty (truncated?)")
    config = _mapping(path, config)
    _identity(path, config)
    _plain_record(path, config)
    return config, _trainer_accepts(path, config)


def _trainer_accepts(path: Path, config: dict[str, Any]) -> Any:
    """The TrainConfig ``lmix train`` reads from ``config`` (resolved as it resolves one); RecordError
    naming the setting where the trainer would refuse it before training.

    Refused: a key that is not a setting of ``lmix train`` (it refuses such a file); a value of the
    wrong type, out of bounds or not a choice, and the checks across settings (:meth:`TrainConfig.validate`);
    a model or ``channels_last`` the data set's kind does not take (the trainer's ``check_input_kind``),
    ``in_memory: false`` for a time series (:func:`lmix.data.build.check_in_memory`); a setting the
    method's mixer rejects (the mixer is built). The message names the setting:
    ``config key 'epochs' must be ...``, ``unknown config key 'foo' ...``.
    """
    from lmix.data.build import check_in_memory
    from lmix.experiments.train.checks import check_input_kind
    from lmix.experiments.train.config import TrainConfig, check_keys
    from lmix.experiments.train.mixer_config import mixer_from_config

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(k for k in config if k not in known)
    if unknown:
        raise RecordError(path, f"unknown config key {unknown[0]!r}: not a setting of lmix train, which refuses it")
    try:
        trained = TrainConfig(**check_keys(config, source=CONFIG_YAML)).resolve().validate()
        check_input_kind(trained)
        check_in_memory(trained.dataset, trained.in_memory)
        mixer_from_config(trained)
    except (LmixError, ValueError, TypeError) as err:  # whatever the trainer's own checks raise
        raise RecordError(path, str(err)) from None
    return trained


def _after_path(message: str, path: Path) -> str:
    """``"config.yaml '/x/config.yaml' is not valid YAML: ..."`` -> ``"is not valid YAML: ..."``."""
    head = f"{CONFIG_YAML} {str(path)!r} "
    return message[len(head) :] if message.startswith(head) else message


def load_metrics(run_dir: str | os.PathLike, *, epochs: int | None = None) -> list[dict[str, Any]] | None:
    """A run's ``metrics.jsonl``: one mapping per epoch, ``epoch`` 1, 2, ...; None if there is none.

    Args:
        epochs: the run's epochs (from its summary): a finished run has exactly that many rows.
    """
    path = Path(run_dir) / METRICS_JSONL
    text = _text(path)
    if text is _ABSENT:
        return None
    rows = []
    for i, line in enumerate(text.splitlines(), 1):  # type: ignore[union-attr]
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise RecordError(path, f"line {i} is not valid JSON (truncated?)") from None
        if not isinstance(row, dict):
            raise RecordError(path, f"line {i} must be a mapping, got {_kind(row)}")
        rows.append(row)
    for n, row in enumerate(rows, 1):
        if row.get("epoch", n) != n:
            raise RecordError(path, f"row {n} is for epoch {row.get('epoch')!r}, expected {n} (rows missing?)")
        if row.get("test_acc") is not None:
            _accuracy(path, f"test_acc of epoch {n}", row["test_acc"])
        # A loss that is not finite is no damage but a diverged run (divergence() says so).
        _plain_record(path, {k: v for k, v in row.items() if not (k in LOSS_KEYS and _not_finite(v))}, f"epoch {n}: ")
    if epochs is not None and len(rows) != epochs:
        raise RecordError(path, f"has {len(rows)} epoch rows for a {epochs}-epoch run (truncated?)")
    return rows


def load_fgsm(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run's ``fgsm.json``: ``eps`` (fractions of the pixel range), ``acc`` (percent) and
    ``eps_255`` (1/255 units, optional), one value per eps; None if there is none."""
    path = Path(run_dir) / FGSM_JSON
    record = _json_mapping(path)
    if record is None:
        return None
    for key in ("eps", "acc", "eps_255"):
        values = record.get(key)
        if key == "eps_255" and key not in record:
            continue
        if not isinstance(values, list) or not values:
            raise RecordError(path, f"{key} must be a non-empty list, got {values!r}")
        if len(values) != len(record["eps"]):
            raise RecordError(path, f"{key} has {len(values)} values for {len(record['eps'])} eps")
    for i, (eps, acc) in enumerate(zip(record["eps"], record["acc"])):
        if not is_finite_real(eps) or not 0 <= eps <= 1:
            raise RecordError(path, f"eps {i} must be a fraction of the pixel range in [0, 1], got {eps!r}")
        _accuracy(path, f"acc {i}", acc)
    for i, (eps, e255) in enumerate(zip(record["eps"], record.get("eps_255", record["eps"]))):
        if "eps_255" in record and (not is_finite_real(e255) or abs(eps * 255 - e255) > 1e-6):
            raise RecordError(path, f"eps_255 {i} must be eps {i} in 1/255 units ({eps * 255:.6g}), got {e255!r}")
        if eps in record["eps"][:i]:
            raise RecordError(path, f"eps {i} ({eps!r}) is there twice")
    _plain_record(path, record)
    return record


def load_failed(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``failed.json`` of a run whose last attempt failed (why: ``error``; ``diverged``), written by
    ``lmix train`` (a diverged run) or ``lmix sweep`` (any failure); None if there is none."""
    path = Path(run_dir) / FAILED_JSON
    record = _json_mapping(path)
    if record is None:
        return None
    for key in ("error", "reason", "message"):
        _check(path, record, key, lambda v: isinstance(v, str), "text")
    _check(path, record, "diverged", lambda v: isinstance(v, bool), "true or false")
    _identity(path, record)
    _plain_record(path, record, finite=False)  # the loss that stopped a diverged run may be NaN
    return record


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


# ---------------------------------------------------------------------------------------------
# a finished run
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FinishedRun:
    """The records of a finished run, each read and checked (:func:`read_finished`).

    Attributes:
        summary: ``summary.json``.
        config: ``config.yaml``.
        metrics: ``metrics.jsonl``, one row per epoch of the summary's ``epochs``.
        fgsm: ``fgsm.json`` (None where the run was not attacked).
    """

    summary: dict[str, Any]
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    fgsm: dict[str, Any] | None

    @property
    def dataset(self) -> str:
        return str(self.summary.get("dataset") or self.config.get("dataset"))


def read_finished(run_dir: str | os.PathLike) -> FinishedRun:
    """Every record of a finished run, checked; RecordError naming the first file that is missing or unusable.

    ``summary.json``, ``config.yaml`` and ``metrics.jsonl`` are required (:data:`FINISHED_RUN_FILES`),
    ``fgsm.json`` is read where it is there; summary and config must name the same run, and the
    config, as the trainer reads it, must agree with every setting the summary records
    (``config.yaml: max_soft is 0.3 but summary.json records 0.0``; see :func:`_contradiction`).
    """
    folder = Path(run_dir)
    summary = _required(folder / SUMMARY_JSON, load_summary(folder))
    config, trained = _required(folder / CONFIG_YAML, _read_config(folder / CONFIG_YAML))
    for key in _IDENTITY:
        mine, theirs = summary.get(key), config.get(key)
        if mine is not None and theirs is not None and mine != theirs:
            raise RecordError(folder / SUMMARY_JSON, f"{key} is {mine!r} but config.yaml says {theirs!r}")
        if mine is None and theirs is None:
            raise RecordError(folder / SUMMARY_JSON, f"names no {key} (and config.yaml neither)")
    # the summary's epochs are the config's (the trainer writes both): blame the pair before the rows
    epochs = summary.get("epochs")
    if epochs is not None and config.get("epochs") is not None and config["epochs"] != epochs:
        raise RecordError(folder / SUMMARY_JSON, f"epochs is {epochs!r} but config.yaml says {config['epochs']!r}")
    problem = _contradiction(summary, config, trained)
    if problem is not None:
        raise RecordError(folder / CONFIG_YAML, problem)
    metrics = _required(folder / METRICS_JSONL, load_metrics(folder, epochs=epochs))
    return FinishedRun(summary, config, metrics, load_fgsm(folder))


def _required(path: Path, record: Any) -> Any:
    if record is None:
        raise RecordError(path, f"is missing (a finished run records {', '.join(FINISHED_RUN_FILES)})")
    return record


def _contradiction(summary: dict[str, Any], config: dict[str, Any], trained: Any) -> str | None:
    """Where ``config.yaml``, read as the trainer reads it (``trained``), contradicts a setting that
    ``summary.json`` records; None where it agrees with all of them (or the summary records none).

    The summary records the seed; ``device`` and ``amp`` as they resolved (``auto`` agrees with any
    device, and gives the precision the trainer picks on it); ``mixer``, the mixer's every setting
    (``Mixer.describe()``), which the mixer built from the config must match; and ``num_params``,
    which the model built from the config (on the meta device: no memory) must have. A setting one
    of them lacks (a record of an older lmix) is not compared. Numbers compare by value (``1`` and
    ``1.0``, ``-0.0`` and ``0.0`` agree).

    Returns:
        ``"max_soft is 0.3 but summary.json records 0.0"``, or None.
    """
    seed = summary.get("seed")
    if seed is not None and not _same(seed, trained.seed):
        return f"seed is {_shown(trained.seed)} but {SUMMARY_JSON} records {_shown(seed)}"
    device = summary.get("device")
    if (
        device is not None
        and trained.device not in ("auto", device)
        and not (trained.device == "cuda" and device.startswith("cuda:"))
    ):
        return f"device is {_shown(trained.device)} but {SUMMARY_JSON} records {_shown(device)}"
    problem = _amp_contradiction(summary, trained)
    if problem is None and summary.get("mixer") is not None:
        from lmix.experiments.train.mixer_config import mixer_from_config

        problem = _mixer_contradiction(summary["mixer"], mixer_from_config(trained).describe(), config)
    if problem is None and summary.get("num_params") is not None:
        problem = _model_contradiction(summary["num_params"], trained)
    return problem


def _amp_contradiction(summary: dict[str, Any], trained: Any) -> str | None:
    """Where the precision the trainer picks from the config on the summary's device is not the one it records."""
    amp, device = summary.get("amp"), summary.get("device")
    if amp is None or device is None:
        return None
    import torch

    from lmix.experiments.train.checks import autocast_dtype

    try:
        dtype = autocast_dtype(trained, torch.device(device))
    except RuntimeError:  # not a device name: nothing to compare
        return None
    picked = "none" if dtype is None else str(dtype).replace("torch.", "")  # as the trainer records it
    if picked == amp:
        return None
    on = f"on {device}: " if trained.amp == "auto" else ""
    return f"amp is {_shown(trained.amp)} ({on}{picked}) but {SUMMARY_JSON} records {_shown(amp)}"


# What a config's setting is called in Mixer.describe(), the other way round: describe() key -> config key.
_DESCRIBED_SETTING = {"name": "method", "seed": "seed"}


def _mixer_contradiction(
    recorded: dict[str, Any], built: dict[str, Any], config: dict[str, Any], part: str | None = None
) -> str | None:
    """Where the mixer built from the config differs from the one ``summary.json`` records (``part``:
    the component of a combination such as lmix+mixup being compared)."""
    from lmix.experiments.train.mixer_config import CHOICE_KEYWORDS, MIXER_KEYWORDS

    setting_of = _DESCRIBED_SETTING | {v: k for k, v in {**MIXER_KEYWORDS, **CHOICE_KEYWORDS}.items()}
    for key, theirs in recorded.items():
        if key not in built:  # a setting of another lmix's mixer: nothing to compare it with
            continue
        mine = built[key]
        if key == "mixers" and _parts(theirs) and _parts(mine) and len(theirs) == len(mine):
            for theirs_part, mine_part in zip(theirs, mine):
                problem = _mixer_contradiction(theirs_part, mine_part, config, str(mine_part.get("name")))
                if problem is not None:
                    return problem
            continue
        if _same(mine, theirs):
            continue
        where = f" for its {part} mixer" if part else ""
        setting = setting_of.get(key)
        if setting is None:  # not a setting of lmix train: the trainer always builds the mixer with this value
            return f"builds a mixer whose {key} is {_shown(mine)} but {SUMMARY_JSON} records {_shown(theirs)}{where}"
        stated = config.get(setting)
        shown = _shown(stated) if stated is not None else f"null (the method's default, {_shown(mine)})"
        return f"{setting} is {shown} but {SUMMARY_JSON} records {_shown(theirs)}{where}"
    return None


def _parts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


def _model_contradiction(num_params: int, trained: Any) -> str | None:
    """Where the model the config builds for its data set has another number of parameters than recorded."""
    import torch

    from lmix.data.info import dataset_info
    from lmix.experiments.train.checks import build_model

    info = dataset_info(trained.dataset)
    if info.num_classes is None:  # imagefolder: its classes are known once its files are read
        return None
    try:
        with torch.device("meta"):  # shapes only: no memory, no initial values drawn
            model = build_model(trained, info)
    except (LmixError, ValueError, TypeError) as err:
        return str(err)
    count = sum(p.numel() for p in model.parameters())
    if count == num_params:
        return None
    settings = f"width is {_shown(trained.width)}"
    if trained.model_layout is not None:
        settings += f", model_layout is {_shown(trained.model_layout)}"
    return f"{settings} (a {trained.model} of {count} parameters) but {SUMMARY_JSON} records num_params {num_params}"


def _same(a: Any, b: Any) -> bool:
    """Equal record values: numbers by value (``1`` and ``1.0``, ``-0.0`` and ``0.0``), a boolean only
    to a boolean, lists and mappings item by item."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _shown(value: Any) -> str:
    """A setting's value in a message: text quoted, the rest as JSON writes it (``0.3``, ``true``, ``null``)."""
    if isinstance(value, str):
        return repr(value)
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def divergence(metrics: Sequence[dict[str, Any]], dataset: str) -> str | None:
    """Why a run's ``metrics.jsonl`` shows that it diverged, or None when it does not.

    Each epoch's row is judged by :func:`lmix.experiments.divergence.loss_problem` with the data
    set's number of classes; where that is unknown (``imagefolder``, an unknown name) only a loss
    that is not finite counts.

    Returns:
        ``"diverged in epoch 3 (metrics.jsonl): train_loss nan"`` or None.
    """
    classes = _num_classes(dataset)
    for n, row in enumerate(metrics, 1):
        judged = row if classes is not None else {k: v for k, v in row.items() if k in LOSS_KEYS and _not_finite(v)}
        problem = loss_problem(judged, classes or 2)
        if problem is not None:
            return f"diverged in epoch {row.get('epoch', n)} ({METRICS_JSONL}): {problem}"
    return None


def _num_classes(dataset: str) -> int | None:
    from lmix.data.info import dataset_info

    try:
        classes = dataset_info(dataset).num_classes
    except (LmixError, ValueError, KeyError):
        return None
    return classes if is_integer(classes) and classes > 0 else None


def _manifest_path(location: str | os.PathLike) -> Path:
    path = Path(location)
    return path if is_sweep_manifest(path.name) and not path.is_dir() else path / SWEEP_JSON


def load_sweep(location: str | os.PathLike) -> list[tuple[str, dict[str, Any]]] | None:
    """The runs a sweep's manifest lists: ``(folder relative to the sweep, settings)``; None if there is none.

    ``location``: the manifest file, or the folder holding ``sweep.json``.
    """
    path = _manifest_path(location)
    manifest = _json_mapping(path)
    if manifest is None:
        return None
    runs = manifest.get("runs")
    if not isinstance(runs, list):
        raise RecordError(path, f"runs must be a list, got {_kind(runs)}")
    out = []
    for i, run in enumerate(runs):
        name = run.get("name") if isinstance(run, dict) else None
        settings = run.get("settings") if isinstance(run, dict) else None
        parts = name.split("/") if isinstance(name, str) else []
        if not parts or any(p in ("", ".", "..") for p in parts) or "\\" in name or "\0" in name:
            raise RecordError(path, f"run {i} must have a name, a folder inside the sweep's, got {name!r}")
        if not isinstance(settings, dict):
            raise RecordError(path, f"run {i} must have settings, a mapping, got {_kind(settings)}")
        _identity(path, _mapping(path, settings))
        _plain_record(path, settings, f"run {i}: ")
        out.append((name, settings))
    return out


def load_sweep_plan(location: str | os.PathLike) -> AnalysisPlan | None:
    """The analysis plan a sweep's manifest carries (its spec's ``analysis``); None if there is none.

    ``location``: the manifest file, or the folder holding ``sweep.json``.
    """
    path = _manifest_path(location)
    manifest = _json_mapping(path)
    if manifest is None or manifest.get("analysis") is None:
        return None
    eps = manifest.get("attack_eps")
    if eps is not None and (not isinstance(eps, list) or not all(is_finite_real(e) for e in eps)):
        raise RecordError(path, f"attack_eps must be a list of numbers, got {_kind(eps)}")
    try:
        return parse_plan(manifest["analysis"], where="analysis", attack_eps=None if eps is None else tuple(eps))
    except LmixValueError as err:
        raise RecordError(path, str(err)) from None


def read_fgsm(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run's ``fgsm.json``, or None if it is missing or unusable (the attack is then simply run again)."""
    try:
        return load_fgsm(run_dir)
    except RecordError:
        return None


def check_writable(target: str | os.PathLike) -> None:
    """WriteError (one line naming ``target``) unless ``target`` could be written: its folder, or the
    nearest existing folder above it (the atomic writes make missing folders), takes a new file.

    Probed with a temporary file, removed at once, as the atomic writes make one: a command checks
    every file it will write before it spends time, and a check that fails leaves nothing behind.
    """
    target = Path(target)
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise WriteError(target, err) from None
    os.close(fd)
    os.unlink(probe)


def write_fgsm(run_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``record`` to ``run_dir/fgsm.json`` atomically; returns the path."""
    path = Path(run_dir) / FGSM_JSON
    atomic_write_json(path, record)
    return path


# ---------------------------------------------------------------------------------------------
# the trained model
# ---------------------------------------------------------------------------------------------
def check_run_dir(run_dir: str | os.PathLike) -> Path:
    """The run dir as a Path; RecordError (one line) if it is missing or holds no model checkpoint."""
    path = Path(run_dir)
    if not path.exists():
        raise RecordError(path, "run dir does not exist")
    if not path.is_dir():
        raise RecordError(path, "is not a run dir (a folder)")
    if not (path / CHECKPOINT).is_file():
        raise RecordError(
            path, f"is a run dir without a model (no {CHECKPOINT}); train it first: lmix train --out {path}"
        )
    return path


def read_checkpoint(run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """``(config, checkpoint)`` of a run folder: its ``TrainConfig`` and the checkpoint dict, checked."""
    from lmix.experiments.train.checks import load_checkpoint
    from lmix.experiments.train.config import config_from_sources

    path = run_dir / CHECKPOINT
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt.get("model"), dict) or not isinstance(ckpt["config"], dict):
        raise RecordError(path, "has no model weights or no config (not a checkpoint of lmix train)")
    if not _count(ckpt.get("epoch", 0)):
        raise RecordError(path, f"epoch must be a whole number >= 0, got {ckpt.get('epoch')!r}")
    history = ckpt.get("history") or []
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        raise RecordError(path, "history must be a list of per-epoch mappings")
    if history and history[-1].get("test_acc") is not None and not is_finite_real(history[-1]["test_acc"]):
        raise RecordError(path, f"the last epoch's test_acc must be a number, got {history[-1]['test_acc']!r}")
    try:
        config = config_from_sources(ckpt["config"])
    except LmixError as err:
        raise RecordError(path, f"holds an invalid config: {err}") from None
    return config, ckpt


def trained_model(ckpt: dict[str, Any], config: Any, info: Any, run_dir: Path) -> nn.Module:
    """The checkpoint's model, rebuilt for the data set ``info`` and in eval mode (expects normalised images)."""
    from lmix.experiments.train.checks import build_model

    model = build_model(config, info)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RecordError(
            run_dir / CHECKPOINT, f"its model does not fit {config.model!r} on {config.dataset!r}: {first}"
        ) from None
    return model.eval()
