"""A damaged checkpoint.pt (hypothesis): ``lmix attack`` and ``lmix train --resume`` end in one line
and exit code 2, or (where the damage left a loadable checkpoint) do their work; never a traceback,
and a refusal changes no file."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmix.experiments.train import TrainConfig, train
from tests.cli_helpers import run_cli
from tests.experiments.damage import EXAMPLES, FILE_SETTINGS, changed_bytes, changed_document, snapshot


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A one-epoch digits run: its folder, with the checkpoint to damage."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    config = TrainConfig(
        dataset="digits", model="simple_cnn", width=4, epochs=1, train_subset=64, batch_size=32, eval_train=0
    )
    config.out, config.progress = str(out), False
    train(config, log=lambda *_: None)
    return out


def _saved(checkpoint: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    return buf.getvalue()


@st.composite
def _damaged_checkpoint(draw: st.DrawFn, data: bytes) -> bytes:
    """Byte-level damage, or a loadable checkpoint with one entry (or one config setting) changed."""
    how = draw(st.sampled_from(["bytes", "entry", "config"]))
    if how == "bytes":
        return draw(changed_bytes(data))
    checkpoint = torch.load(io.BytesIO(data), weights_only=True)
    if how == "entry":
        return _saved(draw(changed_document(checkpoint)))
    return _saved({**checkpoint, "config": draw(changed_document(checkpoint["config"]))})


def _run_on(
    trained: Path, capsys, checkpoint: bytes, argv: list[str]
) -> tuple[int, dict[str, bytes], dict[str, bytes]]:
    """Run ``lmix *argv`` (``RUN`` standing for the run) on a copy of the trained run holding ``checkpoint``.

    Asserts the command's user-error contract: done (0), or one line on stderr and exit 2; never a
    traceback. Returns the exit code and the run folder's files before and after.
    """
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(trained, run)
        (run / "checkpoint.pt").write_bytes(checkpoint)
        before = snapshot(run)
        code, _, err = run_cli(capsys, [str(run) if a == "RUN" else a for a in argv])
        after = snapshot(run)
    assert "Traceback" not in err
    assert code == 0 or (code == 2 and len(err.strip().splitlines()) == 1), (code, err)
    return code, before, after


@FILE_SETTINGS
@given(data=st.data())
def test_attack_on_a_damaged_checkpoint(trained, capsys, data):
    checkpoint = data.draw(_damaged_checkpoint((trained / "checkpoint.pt").read_bytes()), label="checkpoint")
    argv = ["attack", "--run", "RUN", "--eps", "0,8", "--limit", "16", "--device", "cpu"]
    code, before, after = _run_on(trained, capsys, checkpoint, argv)
    assert {k: after[k] for k in before} == before  # the run's files are as they were ...
    assert set(after) - set(before) == ({"fgsm.json", "fgsm.png"} if code == 0 else set())  # ... results added
    assert code != 0 or len(json.loads(after["fgsm.json"])["acc"]) == 2


@settings(FILE_SETTINGS, max_examples=max(4, EXAMPLES // 2))
@given(data=st.data())
def test_resume_from_a_damaged_checkpoint_is_one_line(trained, capsys, data):
    checkpoint = data.draw(changed_bytes((trained / "checkpoint.pt").read_bytes()), label="checkpoint")
    _, before, after = _run_on(trained, capsys, checkpoint, ["train", "--resume", "--out", "RUN"])
    assert after == before  # refused, or the run was complete already: nothing written


@pytest.mark.parametrize(
    "entry, value",
    [
        ("config", "not a mapping"),
        ("config", [1]),
        ("epoch", "1"),
        ("model", 7),
    ],
)
def test_resume_with_a_wrong_typed_checkpoint_entry(trained, capsys, entry, value):
    checkpoint = torch.load(trained / "checkpoint.pt", weights_only=True)
    _run_on(trained, capsys, _saved({**checkpoint, entry: value}), ["train", "--resume", "--out", "RUN"])


def test_attack_on_a_checkpoint_whose_last_epoch_has_no_test_accuracy(trained, capsys):
    """An epoch row without test_acc (evaluation off for that epoch): the attack runs, no recorded accuracy to compare."""
    checkpoint = torch.load(trained / "checkpoint.pt", weights_only=True)
    argv = ["attack", "--run", "RUN", "--eps", "0,8", "--limit", "16", "--device", "cpu"]
    code, _, after = _run_on(trained, capsys, _saved({**checkpoint, "history": [{}]}), argv)
    assert code == 0 and json.loads(after["fgsm.json"])["recorded_acc"] is None
