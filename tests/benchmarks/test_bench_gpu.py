"""benchmarks/bench_gpu.py: the CPU smoke run end to end, and its deadline, error and planning logic."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lmix

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_gpu.py"
STATUSES = {"ok", "partial", "skipped", "error", "timeout"}


@pytest.fixture(scope="module")
def bench():
    """The script as a module; its sibling modules (gpu_timing, gpu_table4) import as they do when it runs."""
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_gpu", None)
        sys.path.remove(str(BENCH.parent))


@pytest.mark.slow
def test_smoke_run_fills_every_section(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench_gpu.json"]  # atomic writes, no leftovers
    report = json.loads((tmp_path / "bench_gpu.json").read_text())
    sections = report["sections"]
    assert set(sections) == {"environment", "sync_check", "throughput", "device_mix", "table4"}  # JSON keys sorted
    assert {name: sec["status"] for name, sec in sections.items()} == dict.fromkeys(sections, "ok")
    assert all(sec["seconds"] >= 0 for sec in sections.values())

    env_sec = sections["environment"]
    assert env_sec["versions"]["torch"] == torch.__version__ and env_sec["versions"]["lmix"] == lmix.__version__
    assert len(env_sec["versions"]["source_sha256_16"]) == 16
    assert env_sec["matmul_bf16"]["tflop_s"] > 0 and env_sec["copy"]["gb_s"] > 0

    sync = sections["sync_check"]
    assert sync["checked"] is False and "CUDA-only" in sync["note"]
    expected = {"none", "mixup", "cutmix", "fmix", "lmix", "lmix+mixup", "cutout", "patchup"}
    if "manifold_mixup" in lmix.list_mixers():
        expected.add("manifold_mixup")
    assert expected <= set(sync["methods"])
    assert any(k.startswith("trainer.train_epoch") for k in sync["methods"])
    assert all(entry["status"] == "ran" for entry in sync["methods"].values()), sync["methods"]

    speed = sections["throughput"]
    eager = {r["method"] for r in speed["results"] if r["mode"] == "eager"}
    assert eager == {"none", "mixup", "cutmix", "fmix", "lmix", "lmix+mixup"}
    compiled = {r["method"] for r in speed["results"] if r["mode"] == "compiled"}
    assert {"lmix", "(model alone)"} <= compiled
    for row in speed["results"]:
        assert row["img_s"] > 0 and row["model_alone_img_s"] > 0
        assert row["overhead_pct"] == pytest.approx(100 * (row["model_alone_img_s"] / row["img_s"] - 1), rel=1e-6)
    assert speed["compile"]["backend"] == "eager"

    mix = sections["device_mix"]
    assert {r["method"] for r in mix["results"]} == {"lmix", "mixup+lmix sample"} and not mix["errors"]
    assert all(r["mix_ms"] > 0 and r["model_alone_img_s"] > 0 for r in mix["results"])

    t4 = sections["table4"]
    assert t4["epochs"] >= 1 and t4["milestones"] and max(t4["milestones"]) <= t4["epochs"]
    rates = t4["probe"]["per_job_img_s"]
    assert len(rates) == t4["jobs"] == 2 and min(rates) > 0 and t4["plan"]["img_s_per_run"] == min(rates)
    assert [r["method"] for r in t4["runs"]] == ["none", "mixup", "cutmix", "fmix", "lmix"]
    for run in t4["runs"]:
        assert run["status"] == "ok" and run["epochs"] == t4["epochs"]
        assert 0 <= run["final_acc"] <= run["best_acc"] <= 100
    lmix_run = next(r for r in t4["runs"] if r["method"] == "lmix")
    assert (lmix_run["paper_final"], lmix_run["paper_best"]) == (96.62, 96.64)
    assert next(r for r in t4["runs"] if r["method"] == "fmix")["paper_final"] is None  # not in Table 4

    assert {t["name"]: t["status"] for t in report["targets"]} == dict.fromkeys(("T1", "T2", "T3", "T4"), "SKIP")
    # The table is printed last.
    assert "T4 SKIP" in proc.stdout.splitlines()[-2] and "table4" in proc.stdout


def test_without_a_gpu_only_smoke_runs(bench):
    if torch.cuda.is_available():
        pytest.skip("a GPU is available")
    assert bench.main(["--out", "unused"]) == 2


def test_sections_that_do_not_fit_the_deadline_are_skipped(bench, tmp_path):
    threads = torch.get_num_threads()
    try:
        code = bench.main(["--smoke", "--sections", "table4", "--deadline-s", "5", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    report = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert list(report["sections"]) == ["table4"]
    table4 = report["sections"]["table4"]
    assert table4["status"] == "skipped" and "deadline" in table4["reason"] and "needs about 10 s" in table4["reason"]
    assert [t["status"] for t in report["targets"]] == ["SKIP"] * 4


def _ctx(bench, tmp_path, deadline_s: float = 60.0):
    report = {"sections": {}}
    path = tmp_path / "r.json"

    def write():
        path.write_text(json.dumps(report))

    ctx = bench.Context(
        None, torch.device("cpu"), bench.SMOKE, bench.Budget(deadline_s, reserve_s=0.0), write, tmp_path
    )
    return report, ctx, path


def _section(bench, name, run):
    return bench.Section(name, run, lambda cfg: 0)


def test_a_failing_section_records_its_error_and_the_next_runs(bench, tmp_path):
    report, ctx, path = _ctx(bench, tmp_path)

    def broken(sec, ctx):
        sec["partial"] = 1
        raise RuntimeError("boom")

    bench.run_section(report, _section(bench, "first", broken), ctx)
    bench.run_section(report, _section(bench, "second", lambda sec, ctx: sec.update(value=2)), ctx)
    written = json.loads(path.read_text())["sections"]
    assert written["first"]["status"] == "error" and written["first"]["error"] == "RuntimeError: boom"
    assert "test_bench_gpu.py" in written["first"]["where"] and written["first"]["partial"] == 1
    assert written["second"] == {**written["second"], "status": "ok", "value": 2}


def test_the_deadline_alarm_stops_a_running_section(bench, tmp_path):
    report, ctx, path = _ctx(bench, tmp_path)
    old = signal.signal(signal.SIGALRM, bench._raise_deadline)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        bench.run_section(report, _section(bench, "slow", lambda sec, ctx: time.sleep(5)), ctx)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    sec = json.loads(path.read_text())["sections"]["slow"]
    assert sec["status"] == "timeout" and sec["seconds"] < 4


def test_plan_epochs_fills_the_time_left(bench):
    # 10 runs on 10 workers at 5,000 img/s each: an epoch of 60,000 + 10,000 / 2 images is 13 s.
    plan = bench.table4.plan_epochs(
        available_s=120, img_s_per_run=5000, n_train=60000, n_eval=10000, runs=10, jobs=10, run_overhead_s=5,
        max_epochs=200,
    )  # fmt: skip
    assert plan["rounds"] == 1 and plan["epoch_s"] == pytest.approx(13.0)
    assert plan["epochs"] == int((0.85 * 120 - 5) / 13.0) == 7
    assert plan["estimated_s"] <= 120
    # Two rounds halve the time of each run; nothing fits -> 0; never past the paper's epochs.
    half = bench.table4.plan_epochs(
        available_s=120, img_s_per_run=5000, n_train=60000, n_eval=10000, runs=10, jobs=5, run_overhead_s=5,
        max_epochs=200,
    )  # fmt: skip
    assert half["rounds"] == 2 and half["epochs"] == 3
    none = bench.table4.plan_epochs(
        available_s=10, img_s_per_run=5000, n_train=60000, n_eval=10000, runs=10, jobs=10, run_overhead_s=5,
        max_epochs=200,
    )  # fmt: skip
    assert none["epochs"] == 0
    capped = bench.table4.plan_epochs(
        available_s=1e6, img_s_per_run=5000, n_train=60000, n_eval=10000, runs=1, jobs=1, run_overhead_s=5,
        max_epochs=200,
    )  # fmt: skip
    assert capped["epochs"] == 200
    with pytest.raises(ValueError, match="positive rate"):
        bench.table4.plan_epochs(
            available_s=1, img_s_per_run=0, n_train=1, n_eval=1, runs=1, jobs=1, run_overhead_s=0, max_epochs=1
        )


def test_milestones_keep_the_papers_fractions(bench):
    assert bench.table4.scale_milestones([150, 180], 200, 200) == [150, 180]
    assert bench.table4.scale_milestones([150, 180], 200, 20) == [15, 18]
    assert bench.table4.scale_milestones([150, 180], 200, 3) == [2, 3]
    assert bench.table4.scale_milestones([150, 180], 200, 1) == [1]
    epochs, milestones, path = bench.table4.paper_schedule()
    assert (epochs, milestones) == (200, [150, 180]) and path.is_file()


def test_targets_pass_fail_and_skip(bench):
    def row(batch, img_s, overhead):
        return {"batch": batch, "method": "lmix", "mode": "compiled", "img_s": img_s, "overhead_pct": overhead}

    report = {"meta": {"device": "cuda"}, "sections": {"throughput": {"results": [row(512, 61000.0, 2.5)]}}}
    got = {t["name"]: t["status"] for t in bench.check_targets(report)}
    assert got == {"T1": "PASS", "T2": "SKIP", "T3": "PASS", "T4": "SKIP"}
    report["sections"]["throughput"]["results"] = [row(512, 59000.0, 3.5), row(128, 31000.0, 1.0)]
    report["sections"]["device_mix"] = {"results": [{"method": "lmix", "overhead_pct": 3.4}]}
    got = {t["name"]: t["status"] for t in bench.check_targets(report)}
    assert got == {"T1": "FAIL", "T2": "PASS", "T3": "FAIL", "T4": "FAIL"}  # T3 is read at batch 512
    report["sections"]["device_mix"]["results"][0]["overhead_pct"] = 2.0
    assert {t["name"]: t["status"] for t in bench.check_targets(report)}["T4"] == "PASS"
    report["meta"]["device"] = "cpu"
    assert {t["status"] for t in bench.check_targets(report)} == {"SKIP"}


def test_fake_fashion_mnist_reads_like_the_real_files(bench, tmp_path):
    from lmix.data import load_tensors

    bench.table4.write_fake_fashion_mnist(tmp_path, n_train=12, n_test=5)
    train = load_tensors("fashion_mnist", root=tmp_path, train=True)
    test = load_tensors("fashion_mnist", root=tmp_path, train=False)
    assert train.images.shape == (12, 1, 28, 28) and test.images.shape == (5, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and int(train.images.max()) > 0
    assert train.labels.tolist() == [i % 10 for i in range(12)]


def test_a_t3_reference_missing_at_512_falls_back_to_128(bench):
    rows = [
        {"batch": 512, "method": "lmix", "mode": "compiled", "img_s": 70000.0, "overhead_pct": None},
        {"batch": 128, "method": "lmix", "mode": "compiled", "img_s": 20000.0, "overhead_pct": 2.0},
    ]
    report = {"meta": {"device": "cuda"}, "sections": {"throughput": {"results": rows}}}
    targets = {t["name"]: t for t in bench.check_targets(report)}
    assert [targets[n]["status"] for n in ("T1", "T2", "T3")] == ["PASS", "FAIL", "PASS"]
    assert targets["T3"]["batch"] == 128


def test_the_table_prints_gpu_shaped_results(bench):
    """Every branch of the final table, with results shaped as a GPU run writes them."""
    run = {"paper_final": 96.62, "paper_best": 96.64}
    report = {
        "meta": {"device": "cuda", "elapsed_s": 351.0, "deadline_s": 360.0},
        "sections": {
            "environment": {
                "status": "ok",
                "seconds": 9.0,
                "versions": {
                    "python": "3.12.3",
                    "torch": "2.11.0",
                    "torchvision": "0.26.0",
                    "cuda": "13.0",
                    "cudnn": 91000,
                    "lmix": "0.2.0",
                    "git_commit": None,
                    "source_sha256_16": "0123456789abcdef",
                },  # fmt: skip
                "device": {"name": "NVIDIA H200"},
                "matmul_bf16": {"n": 8192, "tflop_s": 780.0},
                "copy": {"gb_s": 4300.0},
            },
            "sync_check": {
                "status": "ok",
                "seconds": 20.0,
                "checked": True,
                "summary": "10/11 sync-free; failed: lmix+mixup",
                "methods": {
                    "lmix": {"status": "pass"},
                    "lmix+mixup": {
                        "status": "fail",
                        "error": "RuntimeError: called a synchronizing op",
                        "where": "x.py:1",
                    },
                },
            },
            "throughput": {
                "status": "partial",
                "seconds": 150.0,
                "results": [
                    bench.result_row(512, "lmix", "eager", [0.01], [0.0095], 15, "eager model alone"),
                    bench.result_row(128, "lmix", "compiled", [0.005], None, 40, None),
                ],
            },
            "table4": {
                "status": "timeout",
                "seconds": 160.0,
                "reason": "deadline during the Table 4 runs",
                "epochs": 6,
                "milestones": [5, 6],
                "probe": {"jobs": 10, "per_job_img_s": [2900.0] + [3011.1] * 9, "aggregate_img_s": 30000.0},
                "runs": [
                    {"method": "lmix", "seed": 0, "status": "ok", "final_acc": 93.1, "best_acc": 93.4, **run},
                    {
                        "method": "lmix",
                        "seed": 1,
                        "status": "timeout",
                        "epochs_done": 5,
                        "final_acc": 92.0,
                        "best_acc": 92.0,
                        **run,
                    },  # fmt: skip
                    {"method": "fmix", "seed": 1, "status": "not started", "paper_final": None, "paper_best": None},
                ],
            },
        },
    }
    report["targets"] = bench.check_targets(report)
    text = bench.format_table(report)
    assert "NVIDIA H200; bf16 matmul 780.0 TFLOP/s" in text and "commit ?" in text
    assert "lmix+mixup: RuntimeError: called a synchronizing op at x.py:1" in text
    assert "table4       timeout" in text
    assert (
        "table4 probe: 10 jobs at once, 2900 img/s each at least, 30000 img/s together; epochs 6, milestones [5, 6]"
        in text
    )
    assert " 93.10  93.40       96.62      96.64" in text and "not started" in text
    assert "T2 FAIL" in text and "T1 SKIP" in text and "T3 SKIP" in text


def test_a_new_section_is_a_function_and_a_line(bench, tmp_path, monkeypatch):
    def section_extra(sec, ctx):
        sec["value"] = ctx.cfg.model

    extra = bench.Section("extra", section_extra, lambda cfg: 0.0, lambda sec: [f"extra: {sec['value']}"])
    monkeypatch.setattr(bench, "SECTIONS", (*bench.SECTIONS, extra))
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--smoke", "--sections", "extra", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert (
        report["sections"]["extra"]["status"] == "ok" and report["sections"]["extra"]["value"] == "preact_resnet_tiny"
    )
    assert "extra: preact_resnet_tiny" in bench.format_table(report)
