"""Values every command takes alike: a seed outside [0, 2**63) is one line and exit 2 in every command
that takes one, before anything is written; -0.0 is the setting 0.0 (one run folder, not two); a wrong
value in a sweep spec or --set names where it came from and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lmix.experiments.cli import main
from tests.cli_helpers import one_line_error
from tests.experiments.sweep.conftest import TINY_SPEC

SEEDS = [2**63, 2**64 - 1, 2**64, 2**100]
TRAIN = ["--dataset", "digits", "--width", "8", "--train-subset", "64", "--batch-size", "32", "--epochs", "1"]


def _spec(tmp_path: Path, **blocks) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**TINY_SPEC, **blocks}))
    return str(path)


# Every way a seed reaches a command: (argv given the seed, what must not exist afterwards).
COMMANDS = {
    "train --seed": lambda tmp, seed: (["train", *TRAIN, "--seed", str(seed), "--out", f"{tmp}/o"], f"{tmp}/o"),
    "train --config": lambda tmp, seed: (
        ["train", *TRAIN, "--config", _write(tmp / "c.yaml", f"seed: {seed}\n"), "--out", f"{tmp}/o"],
        f"{tmp}/o",
    ),
    "show --seed": lambda tmp, seed: (["show", "--seed", str(seed), "--out", f"{tmp}/m.png"], f"{tmp}/m.png"),
    "masks --seed": lambda tmp, seed: (["masks", "--seed", str(seed), "--out", f"{tmp}/o"], f"{tmp}/o"),
    "sweep grid": lambda tmp, seed: (
        ["sweep", _spec(tmp, grid={"method": ["none"], "seed": [0, seed]}), "--out", f"{tmp}/o"],
        f"{tmp}/o",
    ),
    "sweep base": lambda tmp, seed: (
        ["sweep", _spec(tmp, base={**TINY_SPEC["base"], "seed": seed}, grid={"method": ["none"]}), "--out", f"{tmp}/o"],
        f"{tmp}/o",
    ),
    "sweep --set": lambda tmp, seed: (
        ["sweep", _spec(tmp, grid={"method": ["none"]}), "--set", f"seed={seed}", "--out", f"{tmp}/o"],
        f"{tmp}/o",
    ),
}


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_that_takes_a_seed_refuses_one_out_of_range_in_one_line(capsys, tmp_path, command, seed):
    argv, written = COMMANDS[command](tmp_path, seed)
    for dry in ([], ["--dry-run"]) if argv[0] == "sweep" else ([],):
        line = one_line_error(capsys, [*argv, *dry], "[0, 2**63)", str(seed))
        assert "seed" in line and not Path(written).exists()


def test_a_sweep_of_zero_and_minus_zero_is_one_run(capsys, tmp_path):
    spec = _spec(tmp_path, grid={"method": ["lmix"], "max_soft": [0, -0.0, 0.0]})
    assert main(["sweep", spec, "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "1 runs" in text and "max_soft=0.0" in text and "max_soft=-0.0" not in text


def test_train_with_minus_zero_saves_zero(capsys, tmp_path):
    out = tmp_path / "o"
    assert main(["train", *TRAIN, "--max-soft", "-0", "--no-progress", "--out", str(out)]) == 0
    assert "max_soft: 0.0\n" in (out / "config.yaml").read_text()


@pytest.mark.parametrize(
    "blocks, extra, message",
    [
        (
            {"grid": {"method": ["lmix"], "max_soft": ["abc"]}},
            [],
            "lmix: error: sweep spec {spec}: grid: config key 'max_soft' must be of type float, got 'abc'",
        ),
        (
            {"runs": [{"method": "lmix", "max_soft": "abc"}]},
            [],
            "lmix: error: sweep spec {spec}: runs[0]: config key 'max_soft' must be of type float, got 'abc'",
        ),
        (
            {"base": {**TINY_SPEC["base"], "epochs": "nan"}},
            [],
            "lmix: error: sweep spec {spec}: base: config key 'epochs' must be an integer >= 1, got 'nan'",
        ),
        (
            {"grid": {"method": ["lmix"]}},
            ["--set", "max_soft=nan"],
            "lmix: error: --set: config key 'max_soft' must be a finite number in [0, 0.5], got 'nan'",
        ),
    ],
)
def test_a_wrong_value_in_a_spec_or_set_names_where_it_is_and_what_is_allowed(capsys, tmp_path, blocks, extra, message):
    spec = _spec(tmp_path, **blocks)
    for dry in ([], ["--dry-run"]):
        line = one_line_error(capsys, ["sweep", spec, "--out", str(tmp_path / "o"), *extra, *dry])
        assert line == message.format(spec=spec)
    assert not (tmp_path / "o").exists()
