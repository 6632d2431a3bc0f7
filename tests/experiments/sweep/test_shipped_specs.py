"""The sweep specs shipped in configs/sweeps expand to the paper's experiments (configs/sweeps/README.md)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import lmix
from lmix.experiments.sweep import expand, load_spec

ROOT = Path(__file__).resolve().parents[3] / "configs" / "sweeps"
SEEDS = 5


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    if "patchup" not in lmix.list_mixers():
        pytest.skip("PatchUp is not registered yet")
    out = tmp_path_factory.mktemp("paper")
    return {p.stem: expand(load_spec(p), out) for p in sorted(ROOT.glob("*.yaml")) if not p.stem.startswith("cpu_")}


def _cells(runs):
    return Counter((r.config.dataset, r.config.model, r.config.method, r.config.alpha, r.config.k) for r in runs)


def test_every_table_and_figure_has_a_spec(shipped):
    assert set(shipped) == {
        "table1",
        "table2",
        "table3",
        "table4",
        "table5",
        "figure3",
        "figure4",
        "figure5",
        "k_ablation_cifar10",
    }


def test_sizes_and_settings(shipped):
    five = ["none", "mixup", "cutmix", "fmix", "lmix"]
    sizes = {name: len(runs) for name, runs in shipped.items()}
    assert sizes == {
        "table1": 4 * 5 * SEEDS + 2 * SEEDS,  # + Cutout, PatchUp on PreAct-ResNet-18
        "table2": 4 * 5 * SEEDS,
        "table3": 5 * SEEDS,
        "table4": 5 * SEEDS,
        "table5": 3 * 5 * SEEDS,
        "figure3": 4 * 6 * SEEDS + SEEDS,
        "figure4": 4 * SEEDS,
        "figure5": 2 * 5 * SEEDS,
        "k_ablation_cifar10": 4 * SEEDS,  # FMix, LMix k = 1, 2, 4
    }
    for runs in shipped.values():
        assert all(n == SEEDS for n in _cells(runs).values())  # every cell has 5 seeds
        assert {r.config.seed for r in runs} == set(range(SEEDS))
        assert all(r.config.lr == 0.1 and r.config.batch_size == 128 and r.config.momentum == 0.9 for r in runs)
        assert all(r.config.weight_decay == 1e-4 for r in runs)
    assert {r.config.method for r in shipped["table2"]} == set(five)
    for name, epochs, milestones in [
        ("table1", 300, [75, 150, 225]),
        ("table3", 200, [150, 180]),
        ("table4", 200, [150, 180]),
        ("table5", 300, [75, 150, 225]),
        ("figure4", 300, [100, 150, 225]),
    ]:
        assert {(r.config.epochs, tuple(r.config.milestones)) for r in shipped[name]} == {(epochs, tuple(milestones))}
    assert {r.config.alpha for r in shipped["figure3"] if r.config.method != "none"} == {0.1, 0.2, 0.5, 1.0, 2.0, 5.0}
    assert {r.config.method for r in shipped["figure4"]} == {"none", "mixup", "lmix", "lmix+mixup"}
    assert {r.config.dataset for r in shipped["table5"]} == {"svhn"}


def test_specs_sharing_an_out_dir_share_or_separate_runs_correctly(shipped):
    by_name: dict[str, dict] = {}
    for runs in shipped.values():
        for r in runs:
            identity = {k: v for k, v in r.config.to_dict().items() if k not in ("out", "progress")}
            assert by_name.setdefault(r.name, identity) == identity, f"{r.name}: two specs, two configs, one folder"
    table1 = {r.name for r in shipped["table1"]}
    table2 = {r.name for r in shipped["table2"]}
    figure5 = {r.name for r in shipped["figure5"]}
    assert figure5 <= table1 | table2  # Figure 5 attacks the tables' models: no extra training
    # the k ablation's FMix and LMix k = 1 runs are Table 1's (same folders, same configs)
    k_ablation = {r.name for r in shipped["k_ablation_cifar10"]}
    assert len(k_ablation & table1) == 2 * SEEDS
    assert {r.config.k for r in shipped["k_ablation_cifar10"]} == {None, 2.0, 4.0}


def test_cpu_study_specs(tmp_path):
    """The CPU-scale study (docs/results-cpu.md): 5 methods x 5 seeds on both data sets, plus
    LMix's k and image_k ablation on Fashion-MNIST, all with one protocol."""
    fm = expand(load_spec(ROOT / "cpu_study_fmnist.yaml"), tmp_path)
    c10 = expand(load_spec(ROOT / "cpu_study_cifar10.yaml"), tmp_path)
    assert len(fm) == 9 * SEEDS and len(c10) == 5 * SEEDS
    ks = Counter((r.config.method, r.config.k, r.config.image_k) for r in fm)
    assert ks[("lmix", 0.5, None)] == ks[("lmix", 2.0, None)] == ks[("lmix", 4.0, None)] == SEEDS
    assert ks[("lmix", None, 1.0)] == SEEDS
    for r in fm + c10:
        assert (r.config.model, r.config.train_subset, r.config.augment, r.config.epochs) == (
            "simple_cnn",
            1000,
            False,
            50,
        )


def test_k_ablation_declares_its_plan_before_its_runs():
    plan = load_spec(ROOT / "k_ablation_cifar10.yaml").analysis
    assert plan is not None and plan.confirmatory
    assert plan.primary == ("final_acc", 2.0)
    assert [c.label for c in plan.comparisons] == ["slope in k", "lmix - fmix"]
    assert (plan.test, plan.correction, plan.family) == ("paired", "holm", "all")


@pytest.mark.parametrize("name", ["cpu_study_fmnist", "cpu_study_cifar10", "cpu_study_resnet_cifar10"])
def test_cpu_study_plans_are_marked_post_hoc(name, tmp_path):
    spec = load_spec(ROOT / f"{name}.yaml")
    assert spec.analysis is not None and spec.analysis.written == "after_runs"
    assert "Post hoc" in (ROOT / f"{name}.yaml").read_text()
    expand(spec, tmp_path)  # its groups are the spec's
