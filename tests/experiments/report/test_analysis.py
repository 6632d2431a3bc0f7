"""lmix report: tests paired by seed (with Holm's adjustment) and the slope of accuracy against k."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from lmix.experiments.report import build_report, render_latex, render_markdown, render_text_summary, write_report
from lmix.experiments.report.analysis import holm, welch_p

from .conftest import make_run

SEEDS = range(4)
# Per-seed offsets shared by every method: what pairing by seed removes.
OFFSET = [0.0, 3.0, -2.0, 1.0]
NONE = [80.0 + o for o in OFFSET]
CUTMIX = [81.0 + o + d for o, d in zip(OFFSET, [0.1, -0.2, 0.3, 0.0])]
FMIX = [82.0 + o + d for o, d in zip(OFFSET, [0.0, 0.1, -0.1, 0.2])]
# LMix: final accuracy falls 0.25 per unit k on top of the seed offset, plus noise.
K_NOISE = {1.0: [0.05, -0.1, 0.0, 0.1], 2.0: [-0.05, 0.1, 0.05, -0.1], 4.0: [0.0, 0.05, -0.05, 0.0]}
LMIX = {k: [82.0 - 0.25 * k + o + n for o, n in zip(OFFSET, noise)] for k, noise in K_NOISE.items()}
EPS = [0, 2, 8]


def _fgsm(final: float, k: float) -> dict:
    # robustness at eps 8 rises 1 point per unit k, exactly
    return {"eps": [e / 255 for e in EPS], "eps_255": EPS, "acc": [final, final - 30.0, 20.0 + 1.0 * k]}


def _runs(root):
    for s in SEEDS:
        make_run(root, method="none", seed=s, final=NONE[s], fgsm=_fgsm(NONE[s], -5.0))
        make_run(root, method="cutmix", seed=s, final=CUTMIX[s])
        make_run(root, method="fmix", seed=s, final=FMIX[s], fgsm=_fgsm(FMIX[s], 0.0))
        for k, accs in LMIX.items():
            extra = {} if k == 1.0 else {"k": k}
            make_run(root, method="lmix", seed=s, final=accs[s], fgsm=_fgsm(accs[s], k), **extra)


def _test(report, a, b, metric="final_acc"):
    (tests,) = report.paired.values()
    return next(t for t in tests if (t.a, t.b, t.metric) == (a, b, metric))


def test_paired_test_matches_scipy_and_beats_welch_under_seed_offsets(runs_dir):
    _runs(runs_dir)
    report = build_report(runs_dir)
    t = _test(report, "CutMix", "Baseline")
    d = np.array(CUTMIX) - np.array(NONE)
    assert t.seeds == (0, 1, 2, 3)
    assert t.diff == pytest.approx(d.mean())
    assert t.p == pytest.approx(stats.ttest_rel(CUTMIX, NONE).pvalue)
    assert t.ci95 == pytest.approx(stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2)
    cutmix = next(c for c in report.cells if c.method == "cutmix")
    # the seed offsets hide the +1 point from Welch's unpaired test; pairing finds it, and the cell's p vs none is it
    assert welch_p(CUTMIX, NONE) > 0.05 > t.p == cutmix.p_vs_none["final_acc"]
    assert cutmix.vs_none["final_acc"].label == "paired t-test"


def test_holm_adjustment():
    assert holm([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06], nan_ok=False)
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_paired_tests_are_holm_adjusted_per_reference_and_metric(runs_dir):
    _runs(runs_dir)
    report = build_report(runs_dir)
    (tests,) = report.paired.values()
    vs_base = [t for t in tests if t.b == "Baseline" and t.metric == "final_acc"]
    assert {t.a for t in vs_base} == {"CutMix", "FMix", "LMix", "LMix k=2", "LMix k=4"}
    assert [t.p_holm for t in vs_base] == pytest.approx(holm([t.p for t in vs_base]))
    vs_lmix = [t for t in tests if t.b == "LMix" and t.metric == "final_acc"]
    assert {t.a for t in vs_lmix} == {"CutMix", "FMix", "LMix k=2", "LMix k=4"}
    # FGSM comparisons only where both sides were attacked, at eps > 0
    fgsm = {(t.a, t.b, t.metric) for t in tests if t.metric != "final_acc"}
    assert ("CutMix", "Baseline", 8.0) not in fgsm and ("FMix", "Baseline", 8.0) in fgsm
    assert not any(t.metric == 0.0 for t in tests)


def test_paired_uses_only_shared_seeds(runs_dir):
    for s in range(3):
        make_run(runs_dir, method="none", seed=s, final=80.0 + s)
    for s in (1, 2, 5):
        make_run(runs_dir, method="cutmix", seed=s, final=81.0 + s * 1.5)
    report = build_report(runs_dir)
    t = _test(report, "CutMix", "Baseline")
    assert t.seeds == (1, 2)
    assert t.diff == pytest.approx(((82.5 - 81.0) + (84.0 - 82.0)) / 2)


def _blocked_ols(points):
    """Slope, its 95% half-width and p from a dummy-variable regression (numpy), for comparison."""
    seeds = sorted({s for s, _, _ in points})
    x = np.array([[k] + [float(s == t) for t in seeds] for s, k, _ in points])
    y = np.array([v for _, _, v in points])
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    df = len(y) - x.shape[1]
    sigma2 = float(((y - x @ beta) ** 2).sum()) / df
    se = math.sqrt(sigma2 * np.linalg.inv(x.T @ x)[0, 0])
    return beta[0], stats.t.ppf(0.975, df) * se, 2 * stats.t.sf(abs(beta[0] / se), df)


def test_k_trend_matches_a_seed_blocked_regression_and_includes_fmix_as_k0(runs_dir):
    _runs(runs_dir)
    report = build_report(runs_dir)
    (trends,) = report.trends.values()
    final = next(t for t in trends if t.metric == "final_acc")
    assert final.family == "LMix" and final.ks == (0.0, 1.0, 2.0, 4.0) and final.blocked and final.n == 16
    points = [(s, 0.0, FMIX[s]) for s in SEEDS] + [(s, k, LMIX[k][s]) for k in LMIX for s in SEEDS]
    slope, half, p = _blocked_ols(points)
    assert final.slope == pytest.approx(slope)
    assert final.ci95 == pytest.approx(half)
    assert final.p == pytest.approx(p)
    assert final.means[0] == pytest.approx(np.mean(FMIX))
    eps8 = next(t for t in trends if t.metric == 8.0)
    assert eps8.slope == pytest.approx(1.0) and eps8.p == pytest.approx(0.0, abs=1e-12)
    # CutMix has no k: it is in no k family
    assert all(t.family == "LMix" for t in trends)


def test_k_trend_without_repeated_seeds_is_plain_regression(runs_dir):
    values = {(0, 1.0): 80.0, (1, 2.0): 79.0, (2, 3.0): 78.5, (3, 4.0): 77.0}
    for (s, k), v in values.items():
        make_run(runs_dir, method="lmix", seed=s, final=v, **({} if k == 1.0 else {"k": k}))
    report = build_report(runs_dir)
    (trends,) = report.trends.values()
    (t,) = trends
    fit = stats.linregress([k for _, k in values], list(values.values()))
    assert not t.blocked and t.slope == pytest.approx(fit.slope) and t.p == pytest.approx(fit.pvalue)


def test_no_k_family_without_two_k_values(runs_dir):
    for s in range(2):
        make_run(runs_dir, method="none", seed=s, final=80.0 + s)
        make_run(runs_dir, method="lmix", seed=s, final=81.0 + s)
        make_run(runs_dir, method="lmix", seed=s, final=81.0 + s, alpha=0.5)  # alpha varies, not k
    report = build_report(runs_dir)
    assert all(not t for t in report.trends.values())
    assert "Effect of k" not in render_markdown(report)


def test_rendered_in_markdown_summary_and_json(runs_dir, tmp_path):
    _runs(runs_dir)
    report = build_report(runs_dir)
    md = render_markdown(report)
    assert "### Paired by seed (exploratory): digits, simple_cnn" in md
    assert "### Effect of k (exploratory): digits, simple_cnn" in md
    t = _test(report, "CutMix", "Baseline")
    row = next(line for line in md.splitlines() if line.startswith("| CutMix - Baseline |"))
    assert f"{t.diff:+.2f} [{t.diff - t.ci95:+.2f}, {t.diff + t.ci95:+.2f}]" in row
    assert "| LMix | FGSM eps 8 | 0, 1, 2, 4 |" in md
    tex = render_latex(report)
    final = next(t for t in report.trends[next(iter(report.trends))] if t.metric == "final_acc")
    assert f"LMix & final & 0: {final.means[0]:.2f}" in tex and f"${final.slope:+.2f} [" in tex
    summary = render_text_summary(report)
    assert "LMix: final accuracy changes" in summary and "points per unit k" in summary
    written = write_report(report, tmp_path / "out")
    fig = tmp_path / "out" / "fig_k_digits_simple_cnn.png"
    assert fig in written and fig.read_bytes().startswith(b"\x89PNG")
    assert "fig_k_digits_simple_cnn.png" in render_markdown(report)
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    (row_tests,) = data["paired"]
    assert any(x["a"] == "CutMix" and x["b"] == "Baseline" and x["seeds"] == [0, 1, 2, 3] for x in row_tests["tests"])
    (row_trends,) = data["k_trends"]
    final = next(x for x in row_trends["trends"] if x["metric"] == "final_acc")
    assert final["change_over_range"] == pytest.approx(final["slope"] * 4)


def _stats_row(md: str, label: str) -> list[str]:
    """The cells of ``label``'s row in report.md's exploratory statistics table."""
    section = md[md.index("### Statistics (exploratory)") :]
    line = next(line for line in section.splitlines() if line.startswith(f"| {label} | "))
    return [c.strip() for c in line.strip("|").split(" | ")]


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy's own, on near-constant samples
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    n=st.integers(2, 5),
    seeds=st.sampled_from(["same", "shifted", "disjoint", "repeated"]),
)
def test_one_p_for_x_vs_none_in_the_terminal_report_md_and_report_json(tmp_path_factory, data, n, seeds):
    """Same seeds: the p of "Mixup vs Baseline" is ttest_rel's on the per-seed values, and the terminal summary,
    report.md (statistics table and sentence) and report.json (the group's p_vs_none and the paired table) show
    that one number. Seeds that differ, or a seed run twice: Welch's test, labelled as unpaired wherever shown."""
    from lmix.experiments.report import report_json
    from lmix.experiments.report.formats import fmt_p

    root = tmp_path_factory.mktemp("runs")
    acc = st.floats(60, 100, allow_nan=False).map(lambda x: round(x, 2))
    none = data.draw(st.lists(acc, min_size=n, max_size=n), label="none")
    mixup = data.draw(st.lists(acc, min_size=n, max_size=n), label="mixup")
    mixup_seeds = {"same": range(n), "shifted": range(1, n + 1), "disjoint": range(10, 10 + n)}.get(seeds, range(n))
    for seed, final in zip(range(n), none):
        make_run(root, method="none", seed=seed, final=final)
    for seed, final in zip(mixup_seeds, mixup):
        make_run(root, method="mixup", seed=seed, final=final)
    if seeds == "repeated":  # seed 0 once more, in another folder: a second sample of seed 0
        make_run(root / "again", method="mixup", seed=0, final=mixup[0])
        mixup = [*mixup, mixup[0]]
    report = build_report(root, paper=None)
    data_json = report_json(report)
    (group,) = [g for g in data_json["groups"] if g["method"] == "mixup"]
    p, label = group["p_vs_none"]["final_acc"], group["test_vs_none"]["final_acc"]

    if seeds == "same":
        paired = [t for b in data_json["paired"] for t in b["tests"] if (t["a"], t["b"]) == ("Mixup", "Baseline")]
        assert label == "paired t-test" and p == paired[0]["p"] and paired[0]["metric"] == "final_acc"
        diffs = [a - b for a, b in zip(mixup, none)]
        if len(set(diffs)) > 1:  # scipy's t is undefined for constant differences (the report: 1 or 0)
            assert p == pytest.approx(stats.ttest_rel(mixup, none).pvalue, rel=1e-9)
    else:
        why = "a seed repeats" if seeds == "repeated" else "seeds differ"
        assert label == f"Welch (unpaired: {why})"
        if len(set(mixup)) > 1 or len(set(none)) > 1:
            assert p == pytest.approx(stats.ttest_ind(mixup, none, equal_var=False).pvalue, rel=1e-9)

    md = render_markdown(report)
    text = render_text_summary(report)
    shown = fmt_p(p) + ("" if label == "paired t-test" else f", {label}")
    assert _stats_row(md, "Mixup")[4] == shown  # "p vs none" of final accuracy
    # As the report computes it (sum / n, rounded to the shown digits): statistics.mean is exact and can round the other way.
    diff = round(sum(mixup) / len(mixup) - sum(none) / len(none), 2) + 0.0
    verdict = "significant" if p < 0.05 else "not significant"
    sentence = f"Mixup vs Baseline: {diff:+.2f} points final accuracy, {verdict} (p = {p:.3g}, {label})."
    assert f"- {sentence}" in md.splitlines()
    assert f"  {sentence}" in text.splitlines()
