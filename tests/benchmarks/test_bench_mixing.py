"""Smoke test of benchmarks/bench_mixing.py with tiny sizes (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lmix

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_mixing.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_mixing", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_mixing"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_mixing", None)


@pytest.mark.parametrize("shape", [(8, 8), (9, 12), (2, 2)])
def test_reference_sampler_makes_exact_binary_masks(bench, shape):
    rng = np.random.default_rng(0)
    h, w = shape
    for lam in (0.0, 0.3, 0.5, 1.0):
        mask = bench.reference_fmix_mask(lam, shape, 3.0, rng)
        assert mask.shape == shape
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert mask.sum() == round(lam * h * w)


def test_quick_run_writes_json_with_every_mixer(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    argv = ["--quick", "--repeats", "1", "--warmup", "0", "--threads", "1"]
    argv += ["--mask-sizes", "8", "--mask-batch", "2", "--shapes", "4x3x8x8", "--json", str(out)]
    argv += ["--integration-shape", "4x3x8x8", "--collate-shapes", "4x3x8x8"]
    try:
        code = bench.main(argv)
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    text = capsys.readouterr().out
    assert "masks per second" in text and "milliseconds per call" in text and "Targets" in text
    payload = json.loads(out.read_text())
    assert payload["meta"]["threads"] == [1] and payload["meta"]["repeats"] == 1
    methods = {r["method"] for r in payload["results"] if r["section"] == "mix"}
    for name in lmix.list_mixers():
        assert any(m.startswith(f"lmix {name}") for m in methods), name
    assert {"torchvision MixUp", "torchvision CutMix"} <= methods
    masks = {r["method"] for r in payload["results"] if r["section"] == "masks"}
    assert masks == {"lmix.fourier_masks k=0", "lmix.fourier_masks k=1", "FMix reference-style (numpy)"}
    assert all(r["median_s"] > 0 for r in payload["results"])
    # 32x32 and 224x224 were not measured: those targets are skipped, not failed.
    statuses = {t["name"]: t["status"] for t in payload["targets"]}
    assert statuses["T1"] == "SKIP" and statuses["T2"] == "SKIP"
    assert statuses["T3"] in ("PASS", "FAIL")
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # written atomically
    # Sections (c) and (d): the collate functions and the v2 transforms, with their peers.
    assert "milliseconds per collate call" in text and "torchvision v2 transforms" in text
    collate = {r["method"] for r in payload["results"] if r["section"] == "collate"}
    assert collate == set(bench.COLLATE_ROWS)
    transforms = {r["method"] for r in payload["results"] if r["section"] == "transforms"}
    assert {"lmix.transforms.LMix mode=sample", "torchvision v2.MixUp", "torchvision v2.CutMix"} <= transforms
    assert all(statuses[t] in ("PASS", "FAIL") for t in ("T5", "T6", "T9"))


def test_only_selects_sections(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    argv = ["--quick", "--repeats", "1", "--warmup", "0", "--threads", "1", "--only", "collate", "transforms"]
    argv += ["--integration-shape", "5x1x6x6", "--collate-shapes", "5x1x6x6", "--clock", "cpu", "--json", str(out)]
    try:
        assert bench.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    payload = json.loads(out.read_text())
    assert {r["section"] for r in payload["results"]} == {"collate", "transforms"}
    assert payload["meta"]["integration_shape"] == [5, 1, 6, 6] and payload["meta"]["clock"] == "cpu"
    assert "median process CPU time" in capsys.readouterr().out
    assert bench._clock[0] is bench.time.perf_counter  # the default clock is back for the next run
    # An odd batch: lmix's collate runs, timm's (which asserts an even batch) is skipped with a note.
    collate = {r["method"] for r in payload["results"] if r["section"] == "collate"}
    assert "lmix elem switch" in collate and "timm elem switch" not in collate
    assert any("even batch" in n for n in payload["notes"])
    statuses = {t["name"]: t["status"] for t in payload["targets"]}
    assert statuses["T5"] == "SKIP" and statuses["T9"] in ("PASS", "FAIL")


def test_targets_compare_the_right_numbers(bench):
    col = bench.Column("cpu", 1)
    results = [
        bench.Result("masks", "32x32", "lmix.fourier_masks k=1", "cpu/1t", 0.001, 20, 128),  # 128000 / s
        bench.Result("masks", "32x32", bench.REFERENCE, "cpu/1t", 0.01, 20, 128),  # 12800 / s
        bench.Result("masks", "224x224", "lmix.fourier_masks k=1", "cpu/1t", 0.1, 20, 128),
        bench.Result("masks", "224x224", bench.REFERENCE, "cpu/1t", 0.12, 20, 128),
        bench.Result("mix", "2x3x4x4", "lmix lmix mode=batch", "cpu/1t", 0.003, 20, 2),
        bench.Result("mix", "2x3x4x4", "torchvision CutMix", "cpu/1t", 0.002, 20, 2),
        bench.Result("mix", "2x3x4x4", "lmix lmix mode=sample", "cpu/1t", 0.004, 20, 2),
        bench.Result("mix", "2x3x4x4", "timm mixup mode=elem", "cpu/1t", 0.007, 20, 2),
        bench.Result("mix", "2x3x4x4", "timm cutmix mode=elem", "cpu/1t", 0.02, 20, 2),
    ]
    targets = {t.name: t for t in bench.check_targets(results, [col])}
    assert targets["T1"].status == "PASS" and targets["T1"].details["ratio"] == pytest.approx(10.0)
    assert targets["T2"].status == "FAIL" and targets["T2"].details["ratio"] == pytest.approx(1.2)
    assert targets["T3"].status == "PASS" and targets["T3"].details["ratio"] == pytest.approx(1.5)
    # Against the faster timm configuration: 7 ms / 4 ms = 1.75x, short of 2x.
    assert targets["T4"].status == "FAIL" and targets["T4"].details["peer"] == "timm mixup mode=elem"
    small, large = "128x3x32x32", "64x3x224x224"
    results += [
        bench.Result("collate", small, "lmix elem switch", "cpu/1t", 0.002, 20, 128),
        bench.Result("collate", small, "lmix elem LMix alone", "cpu/1t", 0.003, 20, 128),
        bench.Result("collate", small, "timm elem switch", "cpu/1t", 0.005, 20, 128),
        bench.Result("collate", small, "lmix collate, mix_on=device", "cpu/1t", 0.00115, 20, 128),
        bench.Result("collate", small, "timm fast_collate (no mixing)", "cpu/1t", 0.001, 20, 128),
        bench.Result("collate", large, "lmix elem switch", "cpu/1t", 0.019, 20, 64),
        bench.Result("collate", large, "timm elem switch", "cpu/1t", 0.010, 20, 64),
        bench.Result("collate", large, "lmix batch switch", "cpu/1t", 0.006, 20, 64),
        bench.Result("collate", large, "timm batch switch", "cpu/1t", 0.005, 20, 64),
    ]
    collate = {(t.name, t.details.get("case")): t for t in bench.check_targets(results, [col]) if t.name >= "T5"}
    assert collate[("T5", small)].status == "PASS" and collate[("T5", small)].details["ratio"] == pytest.approx(0.4)
    assert collate[("T6", small)].status == "FAIL"  # 0.6x the time: short of 2x faster
    assert collate[("T9", small)].status == "FAIL"  # 1.15x fast_collate's time
    assert collate[("T7", large)].status == "PASS" and collate[("T8", large)].status == "FAIL"  # 1.9x; 1.2x
    assert not any(case == large and name in ("T5", "T6") for name, case in collate)
    assert collate[("T9", large)].status == "SKIP"


def test_cuda_without_a_gpu_is_a_usage_error(bench):
    if torch.cuda.is_available():
        pytest.skip("a GPU is available")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--device", "cuda", "--quick"])
    assert exc.value.code == 2
