"""lmix report: FGSM robustness per method and k (stats per eps, paired tests vs the baseline), run conditions."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from scipy import stats

from lmix.experiments.report import build_report, render_latex, render_markdown, render_text_summary, write_report

from .conftest import make_run

EPS = [0, 1, 2, 4, 8]
# accuracy per eps for seeds 0..2
BASE = [[90.0, 80.0, 70.0, 60.0, 50.0], [91.0, 79.0, 71.0, 58.0, 47.0], [89.5, 80.5, 69.0, 61.0, 52.0]]
LMIX = {1.0: [[91.0, 84.0, 78.0, 70.0, 60.0], [92.0, 85.0, 77.0, 71.0, 58.0], [90.0, 83.0, 79.0, 69.0, 62.0]]}
LMIX[4.0] = [[a + 0.5 for a in accs] for accs in LMIX[1.0]]
PROV = {"amp": "none", "device": "cpu", "lmix_version": "0.3.0", "torch_version": "2.14.1", "device_name": "Xeon"}


def _fgsm(accs, *, fractions=False):
    if fractions:  # only "eps" in [0, 1], as an older fgsm.json might have it
        return {"eps": [e / 255 for e in EPS], "acc": accs}
    return {"eps": [e / 255 for e in EPS], "eps_255": EPS, "acc": accs}


def _runs(root):
    for seed in range(3):
        extra = {**PROV, "git_commit": "a" * 40 if seed else None}
        make_run(root, method="none", seed=seed, fgsm=_fgsm(BASE[seed], fractions=seed == 2), summary_extra=extra)
        for k, accs in LMIX.items():
            make_run(root, method="lmix", seed=seed, k=k, fgsm=_fgsm(accs[seed]), summary_extra=extra)
    make_run(root, method="cutmix", seed=0, mix_mode="batch", summary_extra={**PROV, "git_commit": "b" * 40})


def test_fgsm_statistics_per_eps_and_k(runs_dir):
    _runs(runs_dir)
    report = build_report(runs_dir)
    base = next(c for c in report.cells if c.method == "none")
    k4 = next(c for c in report.cells if c.method == "lmix" and c.variant)
    plain = next(c for c in report.cells if c.method == "lmix" and not c.variant)
    assert [pt.eps_255 for pt in base.fgsm] == EPS  # eps fractions * 255 meet eps_255
    for i, pt in enumerate(k4.fgsm):
        vals = [accs[i] for accs in LMIX[4.0]]
        assert pt.values == vals and pt.stats.n == 3
        assert pt.stats.mean == pytest.approx(statistics.mean(vals))
        half = stats.t.ppf(0.975, 2) * statistics.stdev(vals) / math.sqrt(3)
        assert pt.stats.ci95 == pytest.approx(half)
        p = stats.ttest_rel(vals, [b[i] for b in BASE]).pvalue  # seeds 0, 1, 2 in both: paired
        assert pt.p_vs_none == pytest.approx(p) and pt.vs_none.label == "paired t-test"
    assert plain.fgsm[-1].p_vs_none < 0.05 and base.fgsm[0].p_vs_none is None
    assert next(c for c in report.cells if c.method == "cutmix").fgsm == []  # no fgsm.json


def test_fgsm_tables_figure_and_json(runs_dir, tmp_path):
    _runs(runs_dir)
    report = build_report(runs_dir)
    files = write_report(report, tmp_path / "rep")
    assert "fig5_fgsm_digits_simple_cnn.png" in [f.name for f in files]
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "### FGSM robustness (exploratory tests): digits, simple_cnn" in md
    assert "| method | n | eps 0 | eps 1 | eps 2 | eps 4 | eps 8 |" in md
    vals = [accs[4] for accs in LMIX[4.0]]
    m, h = statistics.mean(vals), stats.t.ppf(0.975, 2) * statistics.stdev(vals) / math.sqrt(3)
    assert f"{m:.2f} [{m - h:.2f}, {m + h:.2f}]" in md
    assert "| LMix k=4 | 3 |" in md
    tex = render_latex(report)
    assert "$\\epsilon=8$" in tex and f"${m:.2f} \\pm {h:.2f}" in tex
    assert "FGSM accuracy (%) per eps" in render_text_summary(report)
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    g = next(g for g in data["groups"] if g["method"] == "lmix" and g["variant"] == {"k": 4.0})
    assert [pt["eps_255"] for pt in g["fgsm"]] == EPS
    assert [r["acc"] for r in g["fgsm"][4]["runs"]] == vals
    assert g["fgsm"][4]["acc"]["mean"] == pytest.approx(m)


def test_fgsm_runs_that_cannot_be_paired_get_welchs_test_labelled(runs_dir):
    """LMix on seeds 3..5, the baseline on 0..2: Welch's unpaired test at every eps, and each p says so."""
    for seed in range(3):
        make_run(runs_dir, method="none", seed=seed, fgsm=_fgsm(BASE[seed]))
        make_run(runs_dir, method="lmix", seed=seed + 3, fgsm=_fgsm(LMIX[1.0][seed]))
    report = build_report(runs_dir)
    lmix = next(c for c in report.cells if c.method == "lmix")
    for i, pt in enumerate(lmix.fgsm[1:], 1):
        p = stats.ttest_ind([a[i] for a in LMIX[1.0]], [b[i] for b in BASE], equal_var=False).pvalue
        assert pt.p_vs_none == pytest.approx(p) and pt.vs_none.label == "Welch (unpaired: seeds differ)"
    md = render_markdown(report)
    fgsm = md[md.index("### FGSM robustness") :].splitlines()
    row = next(line for line in fgsm if line.startswith("| LMix | 3 |"))
    assert row.count(", Welch (unpaired: seeds differ)") == len(EPS)  # every eps, 0 (the clean accuracy) too
    assert "paired by seed unless marked Welch" in render_text_summary(report)
    tex = render_latex(report)
    assert "$^\\dagger$: Welch's unpaired test, where the runs cannot be paired by seed" in tex
    assert tex.count("\\dagger}$") == len(EPS)


def test_tables_state_mode_precision_and_provenance(runs_dir, tmp_path):
    _runs(runs_dir)
    report = build_report(runs_dir)
    md = render_markdown(report)
    # plain-methods table: none (no mode) and lmix (sample); by-settings table: cutmix (batch), lmix k=1, 4
    assert "Runs behind this table (6): mix mode sample; precision (amp) none; device cpu; device name Xeon; " in md
    assert "(7): mix mode batch (1 run), sample (6 runs); precision (amp) none; device cpu;" in md
    assert (
        "lmix 0.3.0; torch 2.14.1; git commit aaaaaaaaaaaa (4 runs), bbbbbbbbbbbb (1 run), not recorded (2 runs)" in md
    )
    tex = render_latex(report)
    assert "precision (amp) none; device cpu." in tex  # mode and precision in the caption
    write_report(report, tmp_path / "rep")
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    cond = data["conditions"]["digits"]
    assert cond["git_commit"] == {"a" * 40: 6, "b" * 40: 1, "not recorded": 3}
    assert cond["mix_mode"] == {"batch": 1, "sample": 6} and cond["amp"] == {"none": 10}


def test_old_summaries_say_not_recorded(runs_dir):
    make_run(runs_dir, method="none", seed=0)
    md = render_markdown(build_report(runs_dir))
    assert "precision (amp) not recorded; device not recorded." in md
    assert "git commit" not in md  # provenance fields no run recorded are left out
