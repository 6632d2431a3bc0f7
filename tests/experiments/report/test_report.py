"""lmix report: numbers equal the runs' summaries, grouping, statistics, regimes, files, CLI errors."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
import yaml
from scipy import stats

from lmix.experiments.cli import main
from lmix.experiments.paper import PAPER_RESULTS, paper_result
from lmix.experiments.report import build_report, render_latex, render_markdown, report_json, write_report
from lmix.experiments.report.settings import MIXER_SETTINGS, mixer_defaults
from tests.cli_helpers import one_line_error

from .conftest import make_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PUBLISHED = Path(__file__).resolve().parents[3] / "results" / "cpu-study-resnet"
FINALS = {
    "none": [90.0, 91.5, 89.0],
    "mixup": [92.0, 92.5, 93.5],
    "lmix": [94.0, 93.0, 94.5],
}


def _three_methods(root, **kw):
    for method, finals in FINALS.items():
        for seed, final in enumerate(finals):
            make_run(root, method=method, seed=seed, final=final, best=final + 1, **kw)


def _group(data, method, **variant):
    (g,) = [g for g in data["groups"] if g["method"] == method and g["variant"] == variant]
    return g


def test_report_numbers_equal_the_summaries(runs_dir, tmp_path):
    _three_methods(runs_dir)
    report = build_report(runs_dir)
    write_report(report, tmp_path / "rep")
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["num_runs"] == 9 and len(data["groups"]) == 3
    for method, finals in FINALS.items():
        g = _group(data, method)
        assert [r["final_acc"] for r in g["runs"]] == finals
        assert [r["best_acc"] for r in g["runs"]] == [f + 1 for f in finals]
        assert [r["seed"] for r in g["runs"]] == [0, 1, 2]
        for r in g["runs"]:  # traceable: each listed folder holds that value
            summary = json.loads((runs_dir / r["dir"] / "summary.json").read_text())
            assert summary["final_acc"] == r["final_acc"] and summary["seed"] == r["seed"]
        assert g["final_acc"]["mean"] == pytest.approx(statistics.mean(finals))
        assert g["final_acc"]["std"] == pytest.approx(statistics.stdev(finals))
        assert g["final_acc"]["n"] == 3
        half = stats.t.ppf(0.975, 2) * statistics.stdev(finals) / math.sqrt(3)
        assert g["final_acc"]["ci95"] == pytest.approx(half)
        assert g["best_acc"]["mean"] == pytest.approx(statistics.mean(finals) + 1)
    # every group has seeds 0, 1, 2: the tests are paired by seed
    p = stats.ttest_rel(FINALS["mixup"], FINALS["none"]).pvalue
    assert _group(data, "mixup")["p_vs_none"]["final_acc"] == pytest.approx(p)
    p = stats.ttest_rel(FINALS["mixup"], FINALS["lmix"]).pvalue
    assert _group(data, "mixup")["p_vs_lmix"]["final_acc"] == pytest.approx(p)
    assert _group(data, "mixup")["test_vs_none"] == {"final_acc": "paired t-test", "best_acc": "paired t-test"}
    assert _group(data, "none")["p_vs_none"] is None and _group(data, "lmix")["p_vs_lmix"] is None

    md = (tmp_path / "rep" / "report.md").read_text()
    mean, std = statistics.mean(FINALS["lmix"]), statistics.stdev(FINALS["lmix"])
    assert f"{mean:.2f} ± {std:.2f} (n=3)" in md
    assert "| model | Baseline | Mixup | LMix | regime |" in md
    assert "overfits" in md and "(p = " in md and ", paired t-test)." in md
    tex = (tmp_path / "rep" / "report.tex").read_text()
    assert "\\begin{tabular}{lccc}" in tex and f"${mean:.2f} \\pm {std:.2f}$" in tex
    assert "simple\\_cnn" in tex


def test_paper_numbers_beside_ours(runs_dir):
    for seed in (0, 1):
        make_run(runs_dir, dataset="cifar10", model="preact_resnet18", method="lmix", seed=seed, final=95.0 + seed)
        make_run(runs_dir, dataset="tiny_imagenet", model="preact_resnet18", method="lmix", seed=seed, final=60.0)
    report = build_report(runs_dir)
    md = render_markdown(report)
    assert "95.50 ± 0.71 (n=2) [96.32]" in md  # Table 1: one number, shown beside final and best
    assert "[63.92]" in md and "[64.16]" in md  # Table 3: final ("Acc") and best ("MaxAcc")
    assert "300-epoch runs" in md  # our 4-epoch runs are flagged as not comparable
    assert "[96.32]" not in render_markdown(build_report(runs_dir, paper="off"))


def test_paper_data_matches_the_papers_tables():
    assert paper_result("cifar100", "preact_resnet34", "lmix").acc == 81.86
    assert paper_result("svhn", "wrn28_10", "fmix") is None
    assert paper_result("fashion_mnist", "preact_resnet18", "mixup").value("final") == 96.20
    assert paper_result("fashion_mnist", "preact_resnet18", "mixup").value("best") == 96.26
    assert paper_result("cifar10", "pyramidnet272_200", "none").value("best") == 97.31
    assert len(PAPER_RESULTS) == 4 * 5 + 4 * 5 + 5 + 4 + 3 * 4


def test_settings_a_method_ignores_or_defaults_do_not_split_groups(runs_dir):
    make_run(runs_dir, method="none", seed=0, final=90.0)
    make_run(runs_dir, method="none", seed=1, final=91.0, alpha=1.0)  # alpha unused by 'none'
    make_run(runs_dir, method="lmix", seed=0, final=92.0)
    make_run(runs_dir, method="lmix", seed=1, final=93.0, k=1.0)  # LMix's default k
    make_run(runs_dir, method="lmix", seed=0, final=80.0, k=4.0)
    report = build_report(runs_dir)
    labels = sorted((c.column_label, len(c.runs)) for c in report.cells)
    assert labels == [("Baseline", 2), ("LMix", 2), ("LMix k=4", 1)]
    (k4,) = [c for c in report.cells if c.variant]
    assert k4.lmix_ref == "LMix"


def test_a_choice_of_methods_groups_explicit_defaults_with_unset_ones(runs_dir):
    make_run(runs_dir, method="lmix+mixup", seed=0, final=90.0)
    make_run(runs_dir, method="lmix+mixup", seed=1, final=91.0, alpha=1.0, k=1.0, mix_schedule="random")
    make_run(runs_dir, method="lmix+mixup", seed=2, final=91.0, mix_mode="batch")  # not the same as no mode
    labels = sorted((c.column_label, len(c.runs)) for c in build_report(runs_dir).cells)
    assert labels == [("LMix+Mixup", 2), ("LMix+Mixup mix_mode=batch", 1)]


def _with_unset_defaults(config: dict) -> dict:
    """A config.yaml as records written before the trainer stated every mixer setting hold it:
    mixing settings at their method's default are unset (null)."""
    defaults = mixer_defaults(config["method"])
    return {
        k: None if k in MIXER_SETTINGS and v is not None and v == defaults.get(MIXER_SETTINGS[k], ...) else v
        for k, v in config.items()
    }


@pytest.mark.skipif(not PUBLISHED.is_dir(), reason="results/cpu-study-resnet not present")
def test_published_records_give_the_same_report_with_unset_default_settings(tmp_path):
    old = tmp_path / "records"
    shutil.copytree(PUBLISHED, old)
    changed = 0
    for path in old.rglob("config.yaml"):
        config = yaml.safe_load(path.read_text())
        unset = _with_unset_defaults(config)
        changed += unset != config
        path.write_text(yaml.safe_dump(unset, sort_keys=False))
    assert changed == 25  # every mixing run states its defaults (alpha, mix_mode, ...); the baseline has none
    before, after = build_report(PUBLISHED, paper="off"), build_report(old, paper="off")
    assert render_markdown(after).replace(str(old), str(PUBLISHED)) == render_markdown(before)
    assert {**report_json(after), "root": None} == {**report_json(before), "root": None}


def test_box_rounding_splits_cutmix_only_when_it_is_not_the_default(runs_dir):
    make_run(runs_dir, method="cutmix", seed=0, final=90.0)
    make_run(runs_dir, method="cutmix", seed=1, final=91.0, box_rounding="exact")  # CutMix's default
    make_run(runs_dir, method="cutmix", seed=0, final=89.0, box_rounding="reference")
    make_run(runs_dir, method="lmix", seed=0, final=92.0, box_rounding="reference")  # unused by LMix
    make_run(runs_dir, method="lmix", seed=1, final=93.0)
    labels = sorted((c.column_label, len(c.runs)) for c in build_report(runs_dir).cells)
    assert labels == [("CutMix", 2), ("CutMix box_rounding=reference", 1), ("LMix", 2)]


def test_regime_says_underfits_when_the_baseline_does(runs_dir):
    for seed in range(2):
        make_run(runs_dir, method="none", seed=seed, final=80.0, clean=85.0 + seed)
        make_run(runs_dir, method="mixup", seed=seed, final=78.0, clean=80.0)
    md = render_markdown(build_report(runs_dir))
    assert "underfits (baseline clean train acc 85.5% < 99%)" in md


def test_rows_by_setting_and_figures(runs_dir, tmp_path):
    fgsm = {"eps": [0.0, 1 / 255, 2 / 255], "acc": [90.0, 60.0, 30.0]}
    for seed in range(2):
        make_run(runs_dir, method="none", seed=seed, final=90.0 + seed, fgsm=fgsm)
        for alpha in (0.2, 1.0, 2.0):
            for method in ("mixup", "lmix"):
                make_run(runs_dir, method=method, seed=seed, final=91.0 + alpha + seed, alpha=alpha, fgsm=fgsm)
        make_run(runs_dir, method="none", seed=seed, final=85.0, train_subset=100)
    report = build_report(runs_dir)
    assert set(report.varying) == {"alpha", "train_subset"}
    rows = {c.row_label for c in report.cells}
    assert rows == {"simple_cnn", "simple_cnn (train_subset=100)"}
    (ref,) = [c for c in report.cells if c.method == "mixup" and dict(c.variant).get("alpha") == 0.2]
    assert ref.lmix_ref == "LMix alpha=0.2"  # compared with LMix at the same alpha
    files = write_report(report, tmp_path / "rep")
    pngs = sorted(p.name for p in files if p.suffix == ".png")
    assert "fig3_alpha_digits_simple_cnn.png" in pngs
    assert "fig4_curves_digits_simple_cnn.png" in pngs and "fig4_curves_digits_simple_cnn_train_subset=100.png" in pngs
    assert "fig5_fgsm_digits_simple_cnn.png" in pngs and "fig_accuracy_digits_simple_cnn.png" in pngs
    for name in pngs:
        assert (tmp_path / "rep" / name).read_bytes()[:8] == PNG_MAGIC
    assert all(f"({name})" in (tmp_path / "rep" / "report.md").read_text() for name in pngs)
    md = render_markdown(report)
    assert "### Final test accuracy by alpha" in md
    assert "| model | Mixup | LMix |" in md
    assert "| simple_cnn, alpha=0.2 | 91.70 ± 0.71 (n=2) | 91.70 ± 0.71 (n=2) |" in md
    # the paper-layout table: methods at their defaults (alpha 1 is Mixup's and LMix's default)
    assert "| simple_cnn | 90.50 ± 0.71 (n=2) | 92.50 ± 0.71 (n=2) | 92.50 ± 0.71 (n=2) | overfits" in md
    (plain_lmix,) = [c for c in report.cells if c.method == "lmix" and not c.variant]
    assert plain_lmix.p_vs_lmix is None  # the reference itself
    assert "simple\\_cnn, alpha=0.2 & $91.70 \\pm 0.71$" in render_latex(report)


def test_unfinished_runs_and_duplicate_seeds_are_noted(runs_dir):
    make_run(runs_dir / "a", method="none", seed=0, final=90.0)
    make_run(runs_dir / "b", method="none", seed=0, final=91.0)
    partial = runs_dir / "c" / "partial"
    partial.mkdir(parents=True)
    (partial / "metrics.jsonl").write_text('{"epoch": 1, "test_acc": 10.0}\n')
    report = build_report(runs_dir)
    assert [(r.dir, r.status, r.detail) for r in report.not_used] == [("c/partial", "unfinished", "1 epoch recorded")]
    text = " ".join(report.notes)
    assert "1 of 3 runs are not in the numbers (1 unfinished)" in text and "seed(s) 0 appear in several runs" in text


def test_cli_report(capsys, runs_dir, tmp_path):
    _three_methods(runs_dir)
    assert main(["report", str(runs_dir), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "digits: final test accuracy" in out and "regime: overfits" in out
    assert (tmp_path / "rep" / "report.md").is_file() and (tmp_path / "rep" / "report.tex").is_file()
    assert main(["report", str(runs_dir), "--quiet"]) == 0
    assert (runs_dir / "report" / "report.json").is_file()

    assert "no finished runs" in one_line_error(capsys, ["report", str(tmp_path / "rep")])
    assert f"DIR {str(tmp_path / 'nope')!r} does not exist" in one_line_error(
        capsys, ["report", str(tmp_path / "nope")]
    )
    bad = tmp_path / "paper.yaml"
    bad.write_text("- {dataset: digits, model: simple_cnn}\n")
    assert "must have keys" in one_line_error(capsys, ["report", str(runs_dir), "--paper", str(bad)])


def test_custom_reference_table(runs_dir, tmp_path):
    _three_methods(runs_dir)
    table = tmp_path / "ref.yaml"
    table.write_text("- {dataset: digits, model: simple_cnn, method: lmix, acc: 97.5, table: mine}\n")
    md = render_markdown(build_report(runs_dir, paper=table))
    assert "[97.50]" in md and "Paper mine" in md


def test_figure_names_stay_within_what_a_file_system_takes(runs_dir, tmp_path):
    many = {"lr": 0.2, "momentum": 0.8, "weight_decay": 0.001, "batch_size": 64, "label_smoothing": 0.1}
    many |= {"warmup_epochs": 1, "lr_gamma": 0.5, "nesterov": True, "test_batch_size": 512, "eval_every": 2}
    make_run(runs_dir, method="none", seed=0, final=90.0)
    make_run(runs_dir, method="none", seed=0, final=91.0, **many)
    paths = write_report(build_report(runs_dir), tmp_path / "rep")
    names = [p.name for p in paths if p.suffix == ".png"]
    assert len(names) == 4 and len(set(names)) == 4 and max(len(n) for n in names) <= 124, names
