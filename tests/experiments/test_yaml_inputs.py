"""The YAML files users write, damaged (hypothesis): a training config (lmix.experiments.train.config),
a sweep spec (lmix.experiments.sweep) and a --paper table (lmix report). Each is read into a value
or refused with an LmixError; on the command line, one line and exit code 2; never a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lmix.errors import LmixError
from lmix.experiments.report.stats import load_paper_table
from lmix.experiments.sweep import expand, load_spec
from lmix.experiments.train import TrainConfig, config_from_sources, load_yaml
from tests.cli_helpers import run_cli
from tests.experiments.damage import EXAMPLES, FILE_SETTINGS, changed_bytes, changed_document, dump_yaml, snapshot

CONFIG = TrainConfig(dataset="digits", model="simple_cnn", width=4, epochs=1, method="lmix", k=2.0).to_yaml().encode()
SPEC = {
    "name": "t",
    "base": {"dataset": "digits", "model": "simple_cnn", "epochs": 1, "width": 4},
    "grid": {"method": ["none", "lmix"], "seed": [0, 1]},
    "attack_eps": [0, 2],
}
PAPER = [{"dataset": "digits", "model": "simple_cnn", "method": "lmix", "acc": 97.5, "table": "mine"}]
# What yaml.safe_load lets out of its constructors besides YAMLError, and documents that refer to themselves.
TRICKY = [b"k: 2001-13-45\n", b"lr: !!float abc\n", b"seed: !!int 0x\n", b"a: !!timestamp x\n", b"&a [*a]\n"]
TRICKY += [b"method_params: &a {lmix: *a}\n", b"milestones: &a [*a]\n", b"lr: .nan\n", b"epochs: 1e400\n", b"[" * 5000]


def _tricky(test):
    """Try every TRICKY document (and an empty file) besides hypothesis' own."""
    for case in [b"", *TRICKY]:
        test = example(content=case)(test)
    return test


@st.composite
def _nested_change(draw: st.DrawFn, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with one change at the top or inside one of its mappings."""
    inner = [k for k, v in document.items() if isinstance(v, dict)]
    if not inner or draw(st.booleans()):
        return draw(changed_document(document))
    key = draw(st.sampled_from(inner))
    return {**document, key: draw(changed_document(document[key]))}


def _damaged_yaml(document: Any) -> st.SearchStrategy[bytes]:
    data = dump_yaml(document)
    structural = _nested_change(document).map(dump_yaml) if isinstance(document, dict) else st.nothing()
    return changed_bytes(data) | structural | st.text(max_size=80).map(str.encode)


def _read(path: Path, read) -> Any:
    try:
        return read(path)
    except LmixError as err:
        assert "\n" not in str(err).strip(), str(err)
        return err


def _with_file(content: bytes, name: str, read) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        out = _read(path, read)
        assert snapshot(Path(tmp)) == {name: content}
        return out


@FILE_SETTINGS
@_tricky
@given(content=_damaged_yaml(yaml.safe_load(CONFIG)))
def test_a_damaged_training_config_is_read_or_refused(content):
    config = _with_file(content, "config.yaml", lambda p: config_from_sources(load_yaml(p)))
    assert isinstance(config, (TrainConfig, LmixError))


@FILE_SETTINGS
@_tricky
@given(content=_damaged_yaml(SPEC))
def test_a_damaged_sweep_spec_is_read_or_refused(content):
    def read(path: Path) -> Any:
        return expand(load_spec(path), path.parent / "out")

    runs = _with_file(content, "spec.yaml", read)
    assert isinstance(runs, (list, LmixError))


@FILE_SETTINGS
@given(content=_damaged_yaml(PAPER) | st.lists(_nested_change(PAPER[0]), max_size=3).map(dump_yaml))
def test_a_damaged_paper_table_is_read_or_refused(content):
    table = _with_file(content, "paper.yaml", load_paper_table)
    assert isinstance(table, (dict, LmixError))
    if isinstance(table, dict):
        assert all(isinstance(v.value("final"), float) for v in table.values())


@settings(FILE_SETTINGS, max_examples=max(4, EXAMPLES // 4))
@given(content=_damaged_yaml(yaml.safe_load(CONFIG)))
def test_lmix_sweep_dry_run_over_a_damaged_config_is_one_line(capsys, content):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "config.yaml").write_bytes(content)
        (folder / "spec.yaml").write_text(yaml.safe_dump({**SPEC, "config": "config.yaml"}))
        before = snapshot(folder)
        code, _, err = run_cli(capsys, ["sweep", str(folder / "spec.yaml"), "--out", str(folder / "out"), "--dry-run"])
        assert snapshot(folder) == before  # a dry run writes nothing
    assert "Traceback" not in err
    assert code == 0 or (code == 2 and len(err.strip().splitlines()) == 1), (code, err)
