"""Hypothesis strategies for damaged files: what a full disk, a killed copy or a careless edit leaves.

Byte-level: empty, truncated at any point, one byte changed, random bytes. Structure-level (the
document still parses): a value replaced by one of any type (NaN, infinity, text, lists,
mappings, null), an extra key, a key removed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
