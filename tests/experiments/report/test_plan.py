"""lmix report and a declared analysis plan: computed first, labelled primary or post hoc, Holm over its family."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from scipy import stats

from lmix.experiments.cli import main
from lmix.experiments.report import build_report, render_markdown, render_text_summary, write_report
from lmix.experiments.report.analysis import holm
from lmix.experiments.report.planned import plans_from_specs
from lmix.experiments.sweep import expand, load_spec

from .conftest import make_run, write_sweep
from .test_analysis import FMIX, LMIX, _runs

PLAN = {
    "written": "before_runs",
    "primary": ["final_acc", "fgsm@8"],
    "comparisons": [["lmix", "fmix"], {"slope": "k"}],
    "test": "paired",
    "correction": {"method": "holm", "family": "all"},
}


def _sweep(root, plan=PLAN, *, extra=False):
    """The runs of test_analysis, listed by a sweep.json that carries ``plan``; ``extra``: a run outside it."""
    _runs(root)
    dirs = sorted(p.parent for p in root.rglob("summary.json"))
    write_sweep(root, dirs, analysis=plan, attack_eps=[0.0, 2.0, 8.0])
    if extra:  # a mixup run beside the sweep's, not listed in its sweep.json
        for s in range(4):
            make_run(root, method="mixup", seed=s, final=70.0 + s)


def _family(report, index=0):
    (planned,) = report.planned
    (row,) = planned.rows
    return row.families[index]


def test_primary_analysis_is_the_declared_tests_with_holm_over_the_family(runs_dir):
    _sweep(runs_dir)
    report = build_report(runs_dir)
    (planned,) = report.planned
    assert planned.status == "primary" and planned.declared.source == "sweep.json"
    family = _family(report)
    assert family.name == "all"
    assert [t.label for t in family.tests] == [
        "LMix - FMix, final",
        "LMix - FMix, FGSM eps 8",
        "slope in k, final",
        "slope in k, FGSM eps 8",
    ]
    diff = family.tests[0]
    assert diff.estimate == pytest.approx(np.mean(np.array(LMIX[1.0]) - np.array(FMIX)))
    assert diff.p == pytest.approx(stats.ttest_rel(LMIX[1.0], FMIX).pvalue) and diff.n == 4
    trend = next(t for t in report.trends[next(iter(report.trends))] if t.metric == "final_acc")
    slope = family.tests[2]
    assert (slope.estimate, slope.ci95, slope.p, slope.ks) == (trend.slope, trend.ci95, trend.p, (0.0, 1.0, 2.0, 4.0))
    assert [t.p_adjusted for t in family.tests] == pytest.approx(holm([t.p for t in family.tests]))
    # the exploratory tests are still there, with their own (narrower) families
    assert report.paired and report.trends


def test_primary_analysis_comes_first_and_the_rest_is_labelled_exploratory(runs_dir, tmp_path):
    _sweep(runs_dir)
    report = build_report(runs_dir)
    md = render_markdown(report)
    assert md.index("## Primary analysis (declared in the spec before the runs)") < md.index("## digits")
    assert "Holm family all: the 4 tests of this table." in md
    t = _family(report).tests[0]
    assert f"| LMix - FMix, final | {t.estimate:+.2f} [{t.estimate - t.ci95:+.2f}, {t.estimate + t.ci95:+.2f}] |" in md
    assert "Every test outside the primary analysis above is exploratory" in md
    assert "### Paired by seed (exploratory): digits, simple_cnn" in md
    assert "Holm families (one per column and reference): FMix - Baseline, CutMix - Baseline" in md
    summary = render_text_summary(report)
    assert summary.startswith("Primary analysis (declared in the spec before the runs)")
    write_report(report, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "report.json").read_text())["analysis"]
    (plan,) = data["plans"]
    assert plan["status"] == "primary" and plan["plan"] == PLAN
    (family,) = plan["rows"][0]["families"]
    assert family["size"] == 4 and family["members"][0] == "LMix - FMix, final"
    assert family["tests"][0]["p_holm"] == pytest.approx(_family(report).tests[0].p_adjusted)


def test_a_plan_written_after_the_runs_is_post_hoc(runs_dir):
    _sweep(runs_dir, {**PLAN, "written": "after_runs"})
    report = build_report(runs_dir)
    assert report.planned[0].status == "post hoc"
    md = render_markdown(report)
    assert "## Post-hoc analysis (declared in the spec after the runs were seen: exploratory)" in md
    assert "Primary analysis" not in md
    assert "No primary analysis: the only analysis plans were written after the runs were seen" in md


def test_without_a_plan_everything_is_exploratory(runs_dir):
    _runs(runs_dir)
    report = build_report(runs_dir)
    assert report.planned == []
    assert "No analysis plan was declared (no sweep.json with an analysis block, no --plan)" in render_markdown(report)


def test_per_metric_families(runs_dir):
    _sweep(runs_dir, {**PLAN, "correction": {"method": "holm", "family": "per_metric"}})
    report = build_report(runs_dir)
    (planned,) = report.planned
    (row,) = planned.rows
    assert [f.name for f in row.families] == ["final", "FGSM eps 8"]
    for family in row.families:
        assert len(family.tests) == 2
        assert [t.p_adjusted for t in family.tests] == pytest.approx(holm([t.p for t in family.tests]))


def test_each_means_the_groups_of_the_sweeps_runs(runs_dir):
    _sweep(runs_dir, {**PLAN, "comparisons": [{"each": "none"}]}, extra=True)
    report = build_report(runs_dir)
    final = [t.comparison for t in _family(report).tests if t.metric == "final_acc"]
    # the mixup runs are not the sweep's; cutmix has no fgsm.json, so it has no FGSM test
    assert final == [
        "FMix - Baseline",
        "CutMix - Baseline",
        "LMix - Baseline",
        "LMix k=2 - Baseline",
        "LMix k=4 - Baseline",
    ]
    cutmix_eps8 = next(t for t in _family(report).tests if t.label == "CutMix - Baseline, FGSM eps 8")
    assert cutmix_eps8.p is None and cutmix_eps8.missing == "fewer than two seeds shared"


def test_a_test_without_runs_still_counts_in_its_family(runs_dir):
    _runs(runs_dir)
    for d in runs_dir.glob("digits/simple_cnn/lmix/k=4.0"):
        shutil.rmtree(d)  # the plan's lmix k=4 group has not finished
    dirs = sorted(p.parent for p in runs_dir.rglob("summary.json"))
    plan = {**PLAN, "primary": ["final_acc"], "comparisons": [[{"method": "lmix", "k": 4}, "fmix"], ["lmix", "fmix"]]}
    write_sweep(runs_dir, dirs, analysis=plan, attack_eps=[0.0, 2.0, 8.0])
    missing, present = _family(build_report(runs_dir)).tests
    assert missing.label == "lmix k=4 - FMix, final" and missing.p is None and missing.p_adjusted is None
    assert missing.missing == "no finished runs of lmix k=4"
    assert present.p_adjusted == pytest.approx(min(1.0, 2 * present.p))  # m = 2, the missing test included


def test_a_damaged_plan_in_sweep_json_is_a_problem_not_a_crash(runs_dir):
    _sweep(runs_dir, {**PLAN, "written": "someday"})
    report = build_report(runs_dir)
    assert report.planned == [] and not report.complete
    assert report.problems == ["sweep.json: analysis: written: must be one of before_runs, after_runs, got 'someday'"]


SPEC = {
    "base": {"dataset": "digits", "model": "simple_cnn", "epochs": 1},
    "grid": {"method": ["none", "fmix", "lmix"], "seed": [0, 1, 2]},
    "analysis": {**PLAN, "primary": ["final_acc"], "comparisons": [["lmix", "fmix"]]},
}


def _spec_runs(tmp_path, spec):
    """A spec file and its runs, finished, in the folders lmix sweep gives them under tmp_path/runs."""
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    root = tmp_path / "runs"
    for run in expand(load_spec(path), root):
        config = run.config
        made = make_run(tmp_path / "made", method=config.method, seed=config.seed, final=80.0 + config.seed)
        shutil.move(made, root / run.name)
    return path, root


def test_plan_option_reads_the_plan_from_a_spec(tmp_path, capsys):
    path, root = _spec_runs(tmp_path, SPEC)
    assert build_report(root).planned == []  # no sweep.json
    (declared,) = plans_from_specs([str(path)], root)
    assert declared.source == f"--plan {path}" and len(declared.dirs) == 9
    assert main(["report", str(root), "--plan", str(path), "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.startswith("Primary analysis (declared in the spec before the runs)")
    assert "| LMix - FMix, final |" in (tmp_path / "out" / "report.md").read_text()


def test_plan_option_errors_are_one_line(tmp_path, capsys):
    path, root = _spec_runs(tmp_path, SPEC)
    no_plan = tmp_path / "no_plan.yaml"
    no_plan.write_text(yaml.safe_dump({k: v for k, v in SPEC.items() if k != "analysis"}))
    assert main(["report", str(root), "--plan", str(no_plan)]) == 2
    assert (
        capsys.readouterr().err == f"lmix report --plan {no_plan}: the spec declares no analysis (no analysis: block)\n"
    )
    elsewhere = tmp_path / "elsewhere"
    make_run(elsewhere, method="none")
    assert main(["report", str(elsewhere), "--plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lmix report --plan {path}: none of the spec's 9 runs is under") and err.count("\n") == 1


def test_sweeps_sharing_an_out_folder_keep_their_own_manifests_and_plans(runs_dir):
    """An ablation run into Table 1's folder (or the other way round) keeps both specs' runs and plans."""
    from lmix.experiments.records import sweep_manifest_name

    assert sweep_manifest_name(runs_dir, "table1") == "sweep.json"  # nothing there yet
    _sweep(runs_dir)  # sweep.json of spec "test", with the plan
    assert sweep_manifest_name(runs_dir, "test") == "sweep.json"  # the same spec writes it again
    assert sweep_manifest_name(runs_dir, "k ablation/2") == "sweep-k_ablation_2.json"
    # Another spec wrote sweep.json after this one (plan-less); this one's plan is in its own file.
    manifest = json.loads((runs_dir / "sweep.json").read_text())
    (runs_dir / "sweep-test.json").write_text(json.dumps(manifest))
    (runs_dir / "sweep.json").write_text(json.dumps({**manifest, "name": "table1", "analysis": None}))
    report = build_report(runs_dir)
    (planned,) = report.planned
    assert planned.status == "primary" and planned.declared.source == "sweep-test.json"
    assert report.complete
