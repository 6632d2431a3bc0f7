"""``lmix sweep --jobs N``: runs in parallel job processes, failures, signals, GPUs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lmix.data import available_cpus
from lmix.experiments.report.collect import collect_runs
from lmix.experiments.sweep import expand, parse_spec, resolve_gpus
from lmix.experiments.sweep.jobs import remove_stale_scratch
from tests.cli_helpers import run_cli
from tests.experiments.locks import held_by_another_thread

from .conftest import QUICK_BASE

SPEC = {
    "name": "tiny",
    "base": {"dataset": "digits", "model": "simple_cnn", "epochs": 1},
    "grid": {"method": ["none", "lmix"], "seed": [0, 1]},
}


FAKE_TRAINER = textwrap.dedent(
    """
    import json, os, signal
    from pathlib import Path

    import torch

    import lmix.experiments.sweep.one_run as one_run


    def fake_train(config, log=print):
        with open(os.environ["LMIX_TEST_CALLS"], "a") as f:
            f.write(config.out + "\\n")
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(config.to_yaml())
        (out / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "test_acc": 50.0}) + "\\n")
        markers = Path(os.environ["LMIX_TEST_MARKERS"])
        tag = f"{config.method}-{config.seed}"
        if (markers / f"fail-{tag}").exists():
            raise RuntimeError(f"loss is nan at epoch 1 ({tag})")
        if (markers / f"kill-{tag}").exists():
            os.kill(os.getpid(), signal.SIGKILL)
        if (markers / f"hang-{tag}").exists():
            (markers / f"started-{tag}").touch()
            signal.pause()  # until a signal ends the process
        summary = {
            "final_acc": 50.0 + config.seed,
            "best_acc": 60.0 + config.seed,
            "threads": torch.get_num_threads(),
            "omp": os.environ.get("OMP_NUM_THREADS"),
            "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        (out / "summary.json").write_text(json.dumps(summary))
        return summary


    one_run.train = fake_train
    """
)


@pytest.fixture
def fake_jobs(tmp_path, monkeypatch):
    """Job processes train with FAKE_TRAINER; returns (markers dir, function reading the calls)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAKE_TRAINER)
    markers = tmp_path / "markers"
    markers.mkdir()
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("LMIX_TEST_CALLS", str(calls))
    monkeypatch.setenv("LMIX_TEST_MARKERS", str(markers))
    return markers, lambda: calls.read_text().split()


def test_jobs_train_every_run_once_mark_failures_and_retry_them(capsys, tmp_path, write_spec, fake_jobs):
    markers, calls = fake_jobs
    (markers / "fail-lmix-1").touch()
    (markers / "kill-none-1").touch()
    out = tmp_path / "o"
    runs = {r.name: r for r in expand(parse_spec(SPEC), out)}
    failing = [
        "dataset=digits/model=simple_cnn/method=none/seed=1",
        "dataset=digits/model=simple_cnn/method=lmix/seed=1",
    ]

    locked = "dataset=digits/model=simple_cnn/method=none/seed=0"
    with held_by_another_thread(runs[locked].dir):  # another sweep trains this one
        code, text, err = run_cli(capsys, ["sweep", str(write_spec(SPEC)), "--out", str(out), "--jobs", "2"])
    assert code == 1
    assert sorted(calls()) == sorted(str(r.dir) for n, r in runs.items() if n != locked)  # each run once
    assert "4 of 4 runs (all shards, 2 at once)" in text and f"{locked}: busy (pid" in text
    assert text.count(": start (pid") == 3 and text.count(": done in") == 1 and text.count(": FAILED after") == 2
    assert "1 trained, 0 already done, 1 busy, 2 failed" in text
    expected = max(1, available_cpus() // 2)
    for name, run in runs.items():
        if name in failing or name == locked:
            assert not (run.dir / "summary.json").exists()
        else:
            summary = json.loads((run.dir / "summary.json").read_text())
            assert summary["threads"] == expected and summary["omp"] == str(expected)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmix sweep: 2 runs failed: ")
    assert "(loss is nan at epoch 1 (lmix-1))" in lines[0] and "killed by SIGKILL" in lines[0]
    assert json.loads((runs[failing[1]].dir / "failed.json").read_text())["error"] == "loss is nan at epoch 1 (lmix-1)"
    killed = json.loads((runs[failing[0]].dir / "failed.json").read_text())  # written by the sweep for its job
    assert killed["error"].startswith("the job process was killed by SIGKILL") and killed["epochs_done"] == 1
    assert not any((r.dir / ".lock").exists() for r in runs.values())

    # the re-run retries the failed runs and trains the one that was busy; the finished one is
    # skipped without starting a process
    for marker in markers.iterdir():
        marker.unlink()
    code, text, err = run_cli(
        capsys, ["sweep", str(write_spec(SPEC)), "--out", str(out), "--jobs", "3", "--threads", "1"]
    )
    assert code == 0 and err == ""
    assert text.count(": start (pid") == 3 and "3 trained, 1 already done, 0 busy, 0 failed" in text
    assert sorted(calls()) == sorted([str(r.dir) for r in runs.values()] + [str(runs[n].dir) for n in failing])
    for name in failing:
        assert not (runs[name].dir / "failed.json").exists()
        assert json.loads((runs[name].dir / "summary.json").read_text())["threads"] == 1
    code, text, _ = run_cli(capsys, ["sweep", str(write_spec(SPEC)), "--out", str(out), "--jobs", "2"])
    assert code == 0 and "start" not in text and "0 trained, 4 already done" in text


def test_jobs_with_real_training_and_fgsm_then_rerun_skips(capsys, tmp_path, write_spec):
    spec = {
        "name": "real",
        "attack_eps": [0, 8],
        "base": QUICK_BASE,
        "grid": {"method": ["none", "lmix"], "seed": [0]},
    }
    out = tmp_path / "o"
    code, text, err = run_cli(capsys, ["sweep", str(write_spec(spec)), "--out", str(out), "--jobs", "2"])
    assert code == 0, err
    assert text.count(": start (pid") == 2 and "2 trained, 0 already done, 0 busy, 0 failed, 2 attacked" in text
    for run in expand(parse_spec(spec), out):
        summary = json.loads((run.dir / "summary.json").read_text())
        fgsm = json.loads((run.dir / "fgsm.json").read_text())
        assert fgsm["eps_255"] == [0, 8] and fgsm["eps"] == [0, 8 / 255] and fgsm["limit"] is None
        assert fgsm["acc"][0] == pytest.approx(summary["final_acc"], abs=1e-9)  # eps 0 is the clean accuracy
        assert fgsm["num_images"] == 360 and fgsm["method"] == run.config.method
    code, text, _ = run_cli(capsys, ["sweep", str(write_spec(spec)), "--out", str(out), "--jobs", "2"])
    assert code == 0 and "start" not in text and "0 trained, 2 already done, 0 busy, 0 failed, 0 attacked" in text


def test_sigterm_reaches_the_jobs_once_and_the_sweep_says_how_to_resume(tmp_path, write_spec, fake_jobs):
    markers, _ = fake_jobs
    tags = ["none-0", "lmix-0"]
    for tag in tags:
        (markers / f"hang-{tag}").touch()
    out = tmp_path / "o"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmix", "sweep", str(write_spec(SPEC)), "--out", str(out), "--jobs", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not all((markers / f"started-{tag}").exists() for tag in tags):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert stderr.strip() == (
        "lmix sweep: interrupted by SIGTERM; runs in flight stopped at their last checkpoint; "
        "re-run the same command to resume"
    )
    assert stdout.count(": start (pid") == 2 and stdout.count("resumes on the next sweep") == 2
    for pid in re.findall(r"start \(pid (\d+)", stdout):
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)  # the jobs are gone
    assert not list(out.rglob("failed.json")) and not list(out.rglob("summary.json"))


def test_resolve_gpus():
    assert resolve_gpus("auto", environ={}, device_count=lambda: 4) == ["0", "1", "2", "3"]
    assert resolve_gpus("auto", environ={}, device_count=lambda: 1) == []  # one GPU: nothing to spread
    assert resolve_gpus("auto", environ={}, device_count=lambda: 0) == []
    # CUDA_VISIBLE_DEVICES wins over the count: its entries are what a child may be given
    assert resolve_gpus("auto", environ={"CUDA_VISIBLE_DEVICES": "2, 5"}, device_count=lambda: 8) == ["2", "5"]
    assert resolve_gpus("auto", environ={"CUDA_VISIBLE_DEVICES": ""}, device_count=lambda: 8) == []
    assert resolve_gpus("none") == []
    assert resolve_gpus("0,3") == ["0", "3"]
    assert resolve_gpus("GPU-1a,GPU-2b") == ["GPU-1a", "GPU-2b"]
    for bad in ("0,,1", "1,1", ","):
        with pytest.raises(ValueError, match="--gpus must be auto, none or a list of distinct GPU ids"):
            resolve_gpus(bad)


def test_jobs_are_spread_over_gpus(capsys, tmp_path, write_spec, fake_jobs, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    out = tmp_path / "o"
    code, text, err = run_cli(
        capsys, ["sweep", str(write_spec(SPEC)), "--out", str(out), "--jobs", "2", "--gpus", "3,1", "--threads", "1"]
    )
    assert code == 0 and err == ""
    starts = re.findall(r": start \(pid \d+, 1 thread\(s\), GPU (\d)\)", text)
    assert len(starts) == 4 and starts[:2] == ["3", "1"]  # the first two jobs go to different GPUs
    seen = [json.loads((r.dir / "summary.json").read_text())["cuda_visible"] for r in expand(parse_spec(SPEC), out)]
    assert sorted(seen) == sorted(starts) and set(seen) == {"1", "3"}

    # runs that name their device keep it: nothing is hidden from them
    spec = {**SPEC, "name": "pinned", "base": {**SPEC["base"], "device": "cpu"}}
    code, text, _ = run_cli(
        capsys, ["sweep", str(write_spec(spec)), "--out", str(tmp_path / "p"), "--jobs", "2", "--gpus", "0,1"]
    )
    assert code == 0 and "GPU" not in text
    for r in expand(parse_spec(spec), tmp_path / "p"):
        assert json.loads((r.dir / "summary.json").read_text())["cuda_visible"] is None


def test_a_killed_sweep_leaves_nothing_outside_its_out_folder(tmp_path, write_spec, fake_jobs):
    """SIGKILL of the sweep (no handler runs): the jobs' files are in .lmix-sweep-* inside --out, which
    lmix report does not search; the jobs notice that their sweep is gone and stop themselves (SIGTERM),
    and the next sweep removes the scratch folder."""
    markers, _ = fake_jobs
    tags = ["none-0", "lmix-0"]
    for tag in tags:
        (markers / f"hang-{tag}").touch()
    out, tmpdir = tmp_path / "o", tmp_path / "tmpdir"
    tmpdir.mkdir()
    argv = [sys.executable, "-m", "lmix", "sweep", str(write_spec(SPEC)), "--out", str(out), "--jobs", "2"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmpdir)})
    pids = []
    try:
        deadline = time.monotonic() + 120
        while not all((markers / f"started-{tag}").exists() for tag in tags):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        proc.kill()
        stdout = proc.communicate(timeout=60)[0]
        pids = [int(pid) for pid in re.findall(r"start \(pid (\d+)", stdout)]
        assert len(pids) == 2
        (scratch,) = out.glob(".lmix-sweep-*")
        assert (scratch / "owner.lock").exists()
        assert [r.dir for r in collect_runs(out).runs if ".lmix-sweep-" in r.dir] == []
        # The orphaned jobs (their own sessions: no terminal signal reaches them) stop by themselves;
        # their lock on the scratch folder goes with them, and the next sweep may remove it.
        deadline = time.monotonic() + 30
        while remove_stale_scratch(out) != [scratch]:
            assert time.monotonic() < deadline, "the jobs of a killed sweep go on running"
            time.sleep(0.1)
        assert all(_gone(pid) for pid in pids)
    finally:
        for pid in pids:  # only if the test failed: never leave a job behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert list(tmpdir.iterdir()) == []  # nothing in the system's temporary folder
    assert not list(out.glob(".lmix-sweep-*"))


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (reaped, or a zombie waiting for its new parent to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_runs_of_a_killed_sweep_stop_at_a_checkpoint_and_the_next_sweep_finishes_them(tmp_path, write_spec):
    """Real training: the sweep is SIGKILLed mid-run; its jobs stop by themselves as on SIGTERM (last
    checkpoint kept, run locks released, no failed.json), and the same command then resumes both runs
    to the end, every epoch recorded once."""
    epochs = 150
    spec = {"name": "orphans", "base": {**QUICK_BASE, "epochs": epochs}, "grid": {"method": ["none", "lmix"]}}
    out = tmp_path / "o"
    argv = ["sweep", str(write_spec(spec)), "--out", str(out), "--jobs", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "lmix", *argv], stdout=subprocess.PIPE, text=True)
    runs = expand(parse_spec(spec), out)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not all((r.dir / "checkpoint.pt").exists() for r in runs):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.kill()
        pids = [int(pid) for pid in re.findall(r"start \(pid (\d+)", proc.communicate(timeout=60)[0])]
        assert len(pids) == 2
        deadline = time.monotonic() + 60
        while not all(_gone(pid) for pid in pids):
            assert time.monotonic() < deadline, "the jobs of a killed sweep go on training"
            time.sleep(0.1)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for r in runs:
        assert (r.dir / "checkpoint.pt").exists()
        assert not (r.dir / "summary.json").exists() and not (r.dir / "failed.json").exists()
        assert len((r.dir / "metrics.jsonl").read_text().splitlines()) < epochs  # stopped mid-run
    code, text, err = subprocess_cli(argv)
    assert code == 0, err
    assert "2 trained, 0 already done, 0 busy, 0 failed" in text
    for r in runs:
        rows = [json.loads(line) for line in (r.dir / "metrics.jsonl").read_text().splitlines()]
        assert [row["epoch"] for row in rows] == list(range(1, epochs + 1))
        assert json.loads((r.dir / "summary.json").read_text())["epochs"] == epochs
    assert not list(out.glob(".lmix-sweep-*"))


def subprocess_cli(argv: list[str]) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "lmix", *argv], capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr
