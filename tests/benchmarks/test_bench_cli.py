"""benchmarks/bench_cli.py: timing a command line (a quick one stands in for compare and train)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_cli.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_cli", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_times_the_documented_commands_as_typed(bench):
    assert bench.COMMANDS == {"compare": ["compare"], "train": ["train"]}  # no option but --out


def test_runs_and_median_in_the_json(bench, monkeypatch, tmp_path, capsys):
    # `lmix --version --out DIR` prints the version and exits 0 before --out is read: a real, quick command line.
    monkeypatch.setattr(bench, "COMMANDS", {"compare": ["--version"]})
    out = tmp_path / "d.json"
    monkeypatch.setattr(sys, "argv", ["bench_cli.py", "--commands", "compare", "--runs", "2", "--json", str(out)])
    bench.main()
    data = json.loads(out.read_text())
    runs = data["commands"]["compare"]["runs"]
    assert len(runs) == 2 and all(r["seconds"] > 0 and r["cpu_seconds"] > 0 for r in runs)
    assert data["commands"]["compare"]["median_s"] == pytest.approx(sum(r["seconds"] for r in runs) / 2)
    assert "cores" in data["machine"] and "torch" in data["machine"]
    printed = capsys.readouterr().out
    assert "lmix compare run 2/2: " in printed and "lmix compare: median " in printed


def test_a_failing_command_stops_the_benchmark(bench, monkeypatch):
    monkeypatch.setattr(bench, "COMMANDS", {"compare": ["no-such-command"]})
    monkeypatch.setattr(sys, "argv", ["bench_cli.py", "--commands", "compare", "--runs", "1"])
    with pytest.raises(SystemExit, match="exited 2"):
        bench.main()
