"""A sweep spec's analysis plan: its format, the checks against the spec's runs, and sweep.json."""

from __future__ import annotations

import copy
import json

import pytest

from lmix.errors import LmixValueError
from lmix.experiments.plan import AnalysisPlan, Comparison, Group, parse_plan
from lmix.experiments.sweep import expand, parse_spec, sweep_manifest

PLAN = {
    "written": "before_runs",
    "primary": ["final_acc", "fgsm@2"],
    "comparisons": [["lmix", "fmix"], [{"method": "lmix", "k": 4}, "fmix"], {"each": "none"}, {"slope": "k"}],
    "test": "paired",
    "correction": {"method": "holm", "family": "all"},
}
SPEC = {
    "base": {"dataset": "digits", "model": "simple_cnn", "epochs": 1},
    "grid": {"method": ["none", "fmix", "lmix"], "seed": [0, 1]},
    "include": [{"method": ["lmix"], "k": [2.0, 4.0], "seed": [0, 1]}],
    "attack_eps": [0, 2, 8],
}


def _spec(**plan_changes):
    plan = {**copy.deepcopy(PLAN), **plan_changes}
    return {**copy.deepcopy(SPEC), "analysis": plan}


def test_plan_is_parsed():
    plan = parse_spec(_spec()).analysis
    assert plan == AnalysisPlan(
        written="before_runs",
        primary=("final_acc", 2.0),
        comparisons=(
            Comparison("difference", a=Group("lmix"), b=Group("fmix")),
            Comparison("difference", a=Group("lmix", (("k", 4),)), b=Group("fmix")),
            Comparison("each", b=Group("none")),
            Comparison("slope", key="k"),
        ),
        family="all",
    )
    assert plan.confirmatory
    assert [c.label for c in plan.comparisons] == ["lmix - fmix", "lmix k=4 - fmix", "each - none", "slope in k"]
    assert not parse_spec(_spec(written="after_runs")).analysis.confirmatory
    assert parse_spec(SPEC).analysis is None


def test_plan_round_trips_through_its_dict():
    plan = parse_spec(_spec()).analysis
    assert plan.to_dict() == PLAN
    assert parse_plan(json.loads(json.dumps(plan.to_dict())), where="x", attack_eps=(0.0, 2.0, 8.0)) == plan


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"written": "later"}, "analysis: written: must be one of before_runs, after_runs, got 'later'"),
        ({"test": "welch"}, "analysis: test: must be one of paired, got 'welch'"),
        ({"primary": ["best_acc"]}, "analysis: primary: 'best_acc' is not a metric; allowed: final_acc, fgsm@E"),
        (
            {"primary": ["fgsm@4"]},
            "names FGSM at eps 4, but it is not an eps of attack_eps; allowed: final_acc, fgsm@E with E one of 2, 8",
        ),
        ({"primary": ["fgsm@0"]}, "primary: fgsm@0 is FGSM at eps 0, the clean accuracy; name final_acc instead"),
        ({"primary": ["final_acc", "final_acc"]}, "primary: final_acc is there twice"),
        ({"primary": []}, "primary: must be a non-empty list of metrics"),
        ({"comparisons": []}, "comparisons: must be a non-empty list of comparisons"),
        ({"comparisons": [["lmix"]]}, "comparisons[0]: must be [A, B] (A - B), {each: B} or {slope: k}"),
        ({"comparisons": [["lmix", "lmix"]]}, "comparisons[0]: compares lmix with itself"),
        ({"comparisons": [{"slope": "alpha"}]}, "comparisons[0]: slope: 'alpha' is not allowed; allowed: k"),
        (
            {"comparisons": [[{"k": 2}, "fmix"]]},
            "comparisons[0]: a group is a method name or {method: M, SETTING: VALUE}",
        ),
        ({"comparisons": [["lmix", "fmix"], ["lmix", "fmix"]]}, "comparisons[1]: lmix - fmix is there twice"),
        ({"correction": "holm"}, "analysis: correction: must be a mapping {method: holm, family: all|per_metric}"),
        ({"correction": {"method": "holm", "family": "some"}}, "correction: family: must be one of all, per_metric"),
        ({"correction": {"method": "bonferroni", "family": "all"}}, "correction: method: must be one of holm"),
    ],
)
def test_invalid_plans(changes, needle):
    with pytest.raises(LmixValueError) as err:
        parse_spec(_spec(**changes))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_plan_keys_are_all_required_and_known():
    for key in PLAN:
        spec = _spec()
        del spec["analysis"][key]
        with pytest.raises(LmixValueError, match=rf"analysis: missing key\(s\) \['{key}'\]; a plan has the keys"):
            parse_spec(spec)
    with pytest.raises(LmixValueError, match=r"unknown key\(s\) \['family'\]"):
        parse_spec(_spec(family="all"))
    with pytest.raises(LmixValueError, match="analysis: must be a mapping"):
        parse_spec({**SPEC, "analysis": ["final_acc"]})


def test_fgsm_metric_needs_attack_eps():
    spec = _spec()
    del spec["attack_eps"]
    with pytest.raises(LmixValueError, match=r"FGSM at eps 2, but the spec attacks no run \(no attack_eps\)"):
        parse_spec(spec)


def test_expanding_accepts_the_groups_the_runs_have(tmp_path):
    runs = expand(parse_spec(_spec()), tmp_path)
    assert len(runs) == 10  # none, fmix, lmix, lmix k=2, lmix k=4 x 2 seeds


@pytest.mark.parametrize(
    "comparison, needle",
    [
        (
            ["lmix", "cutmix"],
            "comparisons[0] (lmix - cutmix): the spec runs no 'cutmix'; its methods: fmix, lmix, none",
        ),
        ([{"method": "lmix", "k": 3}, "fmix"], "the spec runs no lmix k=3 (unnamed varied settings at their defaults)"),
        ([{"method": "lmix", "lr": 0.1}, "fmix"], "'lr' is not a mixing setting"),
        ([{"method": "lmix", "k": 1.0}, {"method": "lmix", "k": 2}], None),  # k = 1 is lmix's default
    ],
)
def test_expanding_refuses_groups_the_runs_lack(tmp_path, comparison, needle):
    spec = parse_spec(_spec(comparisons=[comparison]))
    if needle is None:
        expand(spec, tmp_path)
        return
    with pytest.raises(LmixValueError) as err:
        expand(spec, tmp_path)
    assert needle in str(err.value)


def test_slope_needs_two_k_values_and_each_needs_another_group(tmp_path):
    one_k = {**_spec(comparisons=[{"slope": "k"}]), "include": []}
    one_k["grid"] = {"method": ["none", "lmix"], "seed": [0]}
    with pytest.raises(
        LmixValueError, match=r"needs LMix at two k or more \(FMix counts as k = 0\); the spec runs k = 1"
    ):
        expand(parse_spec(one_k), tmp_path)
    only_none = {**_spec(comparisons=[{"each": "none"}]), "include": []}
    only_none["grid"] = {"method": ["none"], "seed": [0, 1]}
    with pytest.raises(LmixValueError, match="the spec runs no group besides none"):
        expand(parse_spec(only_none), tmp_path)


def test_sweep_json_carries_the_plan(tmp_path):
    spec = parse_spec(_spec())
    manifest = sweep_manifest(spec, expand(spec, tmp_path))
    assert manifest["analysis"] == spec.analysis.to_dict()
    assert "analysis" not in sweep_manifest(parse_spec(SPEC), expand(parse_spec(SPEC), tmp_path))
