"""The configs that ship inside the package, found by name from any directory.

``lmix.experiments.configs`` holds the paper's training configs (``paper/*.yaml``, one per row of
the paper's tables, for ``lmix train --config NAME``) and the sweep specs (``sweeps/*.yaml``, one
per table or figure and the CPU study, for ``lmix sweep NAME``). A config's name is its file name
without ``.yaml``; its description is the first sentence of the comment block that opens the file.

Resolution (:func:`resolve_config`): a path that exists wins; a bare name (no ``/``) that is not
a file resolves to the packaged config of that name; anything else is an error that says where
to look (``lmix configs``). Plain text only: listing needs no YAML parser.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["CONFIG_DIR", "PackagedConfig", "find_config", "list_configs", "resolve_config"]

Kind = Literal["train", "sweep"]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
_SWEEP_DIR = "sweeps"  # specs for ``lmix sweep``; every other YAML file is a training config
_SUFFIXES = (".yaml", ".yml")
_MAX_DESCRIPTION = 110


@dataclass(frozen=True)
class PackagedConfig:
    """One packaged YAML file.

    Attributes:
        name: the file name without its suffix, e.g. ``table1_cifar10_preact_resnet18``.
        kind: ``"train"`` (a ``TrainConfig`` file for ``lmix train --config``) or ``"sweep"``
            (a spec for ``lmix sweep``).
        path: the file inside the installed package.
        description: the first sentence of the file's opening comment ("" if it has none).
    """

    name: str
    kind: Kind
    path: Path
    description: str


def _description(path: Path) -> str:
    """The first sentence of the comment lines that open ``path``, on one line."""
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        text = stripped.lstrip("#").strip()
        if not text:
            if words:
                break  # end of the first paragraph
            continue
        words.extend(text.split())
        sentence = " ".join(words)
        end = sentence.find(". ")
        if end >= 0:
            words = sentence[: end + 1].split()
            break
        if sentence.endswith("."):
            break
    text = " ".join(words)
    if len(text) > _MAX_DESCRIPTION:
        text = text[: _MAX_DESCRIPTION - 3].rsplit(" ", 1)[0] + "..."
    return text


def list_configs(kind: Kind | None = None) -> list[PackagedConfig]:
    """The packaged configs, training configs first, each kind sorted by name.

    Args:
        kind: only ``"train"`` configs or only ``"sweep"`` specs; None for both.
    """
    found = []
    for path in sorted(CONFIG_DIR.rglob("*")):
        if path.suffix not in _SUFFIXES or not path.is_file():
            continue
        path_kind: Kind = "sweep" if path.relative_to(CONFIG_DIR).parts[0] == _SWEEP_DIR else "train"
        if kind is None or kind == path_kind:
            found.append(PackagedConfig(path.stem, path_kind, path, _description(path)))
    found.sort(key=lambda c: (c.kind != "train", c.name))
    return found


def find_config(name: str, kind: Kind | None = None) -> PackagedConfig | None:
    """The packaged config called ``name`` (with or without ``.yaml``), or None."""
    stem = name[: -len(Path(name).suffix)] if Path(name).suffix in _SUFFIXES else name
    matches = [c for c in list_configs(kind) if c.name == stem]
    return matches[0] if matches else None


def resolve_config(name_or_path: str, *, kind: Kind) -> str:
    """The file to read for ``--config`` (``kind="train"``) or a sweep spec (``kind="sweep"``).

    Args:
        name_or_path: a path to a YAML file, or the name of a packaged config
            (``table1_cifar10_preact_resnet18``, ``table1``; ``.yaml`` optional).
        kind: what the caller reads; a name of the other kind is refused with a hint.

    Returns:
        ``name_or_path`` itself when it exists or contains a ``/`` (the caller's own loader
        reports a missing file as before), else the packaged file's path.

    Raises:
        FileNotFoundError: a bare name that is neither a file nor a packaged config of ``kind``
            (one line, pointing at ``lmix configs``).
    """
    if os.path.exists(name_or_path) or "/" in name_or_path or os.sep in name_or_path:
        return name_or_path
    found = find_config(name_or_path, kind)
    if found is not None:
        return str(found.path)
    other = find_config(name_or_path)
    if other is not None:
        use = "lmix train --config" if other.kind == "train" else "lmix sweep"
        raise FileNotFoundError(
            f"{name_or_path!r} is a packaged {_KIND_WORDS[other.kind]}, not a {_KIND_WORDS[kind]}: use it with {use}"
        )
    raise FileNotFoundError(
        f"no file {name_or_path!r} and no packaged {_KIND_WORDS[kind]} of that name; `lmix configs` lists them"
    )


_KIND_WORDS = {"train": "training config", "sweep": "sweep spec"}
