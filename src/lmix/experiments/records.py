"""The files of a run folder, read and written: the records that ``lmix train``, ``lmix sweep``
and ``lmix attack`` leave behind and that ``lmix report`` and ``lmix attack`` read back.

A run folder (``lmix train --out RUN``) holds ``config.yaml``, ``metrics.jsonl`` (one row per
epoch), ``checkpoint.pt`` and, once finished, ``summary.json``; ``lmix attack`` adds
``fgsm.json`` and ``fgsm.png``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmix.experiments.io import atomic_write_json

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = [
    "FGSM_JSON",
    "FGSM_PNG",
    "check_run_dir",
    "read_checkpoint",
    "trained_model",
    "read_fgsm",
    "write_fgsm",
]

FGSM_JSON = "fgsm.json"
FGSM_PNG = "fgsm.png"


def _run_error(msg: str) -> Exception:
    from lmix.experiments.train import RunError

    return RunError(msg)


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    """The run dir as a Path; RunError (one line) if it is missing or holds no model checkpoint."""
    from lmix.experiments.train.trainer import CHECKPOINT

    path = Path(run_dir)
    if not path.exists():
        raise _run_error(f"run dir {str(path)!r} does not exist")
    if not path.is_dir():
        raise _run_error(f"run dir {str(path)!r} is not a directory")
    if not (path / CHECKPOINT).is_file():
        raise _run_error(
            f"{str(path)!r} is a run dir without a model (no {CHECKPOINT}); train it first: lmix train --out {path}"
        )
    return path


def read_checkpoint(run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """``(config, checkpoint)`` of a run folder: its ``TrainConfig`` and the checkpoint dict."""
    from lmix.experiments.train import config_from_sources, load_checkpoint
    from lmix.experiments.train.trainer import CHECKPOINT

    ckpt = load_checkpoint(run_dir / CHECKPOINT)
    return config_from_sources(ckpt["config"]), ckpt


def trained_model(ckpt: dict[str, Any], config: Any, info: Any, run_dir: Path) -> nn.Module:
    """The checkpoint's model, rebuilt for the data set ``info`` and in eval mode (expects normalised images)."""
    from lmix.experiments.train.trainer import CHECKPOINT, build_model

    model = build_model(config, info)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise _run_error(
            f"the model in {str(run_dir / CHECKPOINT)!r} does not fit {config.model!r} on {config.dataset!r}: {first}"
        ) from None
    return model.eval()


def read_fgsm(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run's ``fgsm.json``, or None if it is missing or unreadable."""
    try:
        record = json.loads((Path(run_dir) / FGSM_JSON).read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("eps"), list)
        or not isinstance(record.get("acc"), list)
    ):
        return None
    return record


def write_fgsm(run_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``record`` to ``run_dir/fgsm.json`` atomically; returns the path."""
    path = Path(run_dir) / FGSM_JSON
    atomic_write_json(path, record)
    return path
