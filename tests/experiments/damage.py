"""Hypothesis strategies for damaged files: what a full disk, a killed copy or a careless edit leaves.

Byte-level: empty, truncated at any point, one byte changed, random bytes. Structure-level (the
document still parses): a value replaced by one of any type (NaN, infinity, text, lists,
mappings, null), an extra key, a key removed.

Read-only folders: the tests run as root in CI, and root writes through any mode bits (the
``CAP_DAC_OVERRIDE`` capability), so ``chmod`` alone proves nothing. :func:`unprivileged` is the
command prefix that runs a command with the permissions enforced: ``setpriv`` drops the
capabilities that override them from the bounding set (still uid 0, owning the files, so the
mode bits of their owner apply); :func:`read_only` removes the write bits of a tree.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Property tests over files: few examples (each writes and reads folders; LMIX_DAMAGE_EXAMPLES=1000
# searches longer), no deadline (the CI's two cores are shared), fixtures reused across examples on
# purpose (each example makes its own folder).
EXAMPLES = int(os.environ.get("LMIX_DAMAGE_EXAMPLES", "30"))
FILE_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


def dump_json(document: Any) -> bytes:
    return json.dumps(document).encode()  # NaN and Infinity as Python writes them


def dump_yaml(document: Any) -> bytes:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode()


@st.composite
def changed_document(draw: st.DrawFn, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with one key's value replaced (any type), one key added or one key removed."""
    out = dict(document)
    how = draw(st.sampled_from(["replace", "add", "remove"]))
    if how == "add" or not out:
        out[draw(st.text(min_size=1, max_size=8))] = draw(values)
    else:
        key = draw(st.sampled_from(sorted(out)))
        if how == "replace":
            out[key] = draw(values)
        else:
            del out[key]
    return out


@st.composite
def changed_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` emptied, truncated, with one byte changed, or replaced by random bytes."""
    how = draw(st.sampled_from(["empty", "truncate", "flip", "random"]))
    if how == "empty":
        return b""
    if how == "truncate":
        return data[: draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))]
    if how == "flip" and data:
        i = draw(st.integers(min_value=0, max_value=len(data) - 1))
        return data[:i] + bytes([draw(st.integers(min_value=0, max_value=255))]) + data[i + 1 :]
    return draw(st.binary(max_size=200))


def damaged(data: bytes, parse: Callable[[bytes], Any], dump: Callable[[Any], bytes]) -> st.SearchStrategy[bytes]:
    """A damaged version of a file's bytes ``data``: byte-level, or (for a mapping) structure-level."""
    document = parse(data)
    structural = changed_document(document).map(dump) if isinstance(document, dict) else st.nothing()
    return changed_bytes(data) | structural


def damaged_jsonl(data: bytes) -> st.SearchStrategy[bytes]:
    """A damaged ``metrics.jsonl``: byte-level, or one row changed, dropped or replaced by any value."""
    rows = [json.loads(line) for line in data.decode().splitlines()]

    @st.composite
    def one_row(draw: st.DrawFn) -> bytes:
        i = draw(st.integers(min_value=0, max_value=len(rows) - 1))
        new = list(rows)
        how = draw(st.sampled_from(["change", "drop", "any"]))
        if how == "drop":
            del new[i]
        else:
            new[i] = draw(changed_document(rows[i])) if how == "change" else draw(values)
        return "".join(json.dumps(r) + "\n" for r in new).encode()

    return changed_bytes(data) | one_row()


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes: to show that reading a folder changed nothing in it."""
    return {
        os.path.relpath(os.path.join(folder, name), root): Path(folder, name).read_bytes()
        for folder, _, files in os.walk(root)
        for name in files
    }


# The capabilities that let root read and write whatever the mode bits say.
_OVERRIDES = "-dac_override,-dac_read_search,-fowner,-linux_immutable"


def unprivileged() -> list[str]:
    """The prefix of a command line under which file permissions hold, also for root (skips the test
    where they cannot be enforced)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root without setpriv (util-linux): a read-only folder cannot be enforced")
    return [setpriv, f"--bounding-set={_OVERRIDES}"]


def run_unprivileged(command: Sequence[str], *, timeout: float = 300, cwd: Path | None = None) -> tuple[int, str, str]:
    """``command`` in a new process whose file permissions are enforced; (exit code, stdout, stderr)."""
    proc = subprocess.run(
        [*unprivileged(), *command], capture_output=True, text=True, timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL
    )
    return proc.returncode, proc.stdout, proc.stderr


def run_lmix(argv: Sequence[str], *, timeout: float = 300) -> tuple[int, str, str]:
    """``lmix *argv`` in a new process whose file permissions are enforced; (exit code, stdout, stderr)."""
    return run_unprivileged([sys.executable, "-m", "lmix", *argv], timeout=timeout)


@contextlib.contextmanager
def read_only(root: Path) -> Iterator[Path]:
    """``root`` and everything under it without write bits, restored on exit."""
    paths = [root, *root.rglob("*")]
    modes = {p: p.stat().st_mode for p in paths}
    for p in sorted(paths, key=lambda p: len(p.parts), reverse=True):
        p.chmod(stat.S_IMODE(modes[p]) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield root
    finally:
        for p in sorted(paths, key=lambda p: len(p.parts)):
            p.chmod(stat.S_IMODE(modes[p]))
