"""lmix report over a folder where one record is damaged (hypothesis): every case ends in the run
accounted for (used with what its files say, or not used with the file and what is wrong), never
in a traceback, a wrong number or a changed file."""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lmix.experiments.report import build_report, render_latex, render_markdown, render_text_summary, report_json
from lmix.experiments.report.collect import FAILED, UNREADABLE, USED
from tests.cli_helpers import run_cli
from tests.experiments.damage import EXAMPLES, FILE_SETTINGS, damaged, damaged_jsonl, dump_json, dump_yaml, snapshot

from .conftest import make_run, write_sweep

RUN_FILES = ("summary.json", "config.yaml", "metrics.jsonl", "fgsm.json")
FGSM = {"eps": [0.0, 4 / 255], "eps_255": [0.0, 4.0], "acc": [90.0, 60.0]}
VICTIM = "digits/simple_cnn/none/seed=2"
FAILED_RUN = "digits/simple_cnn/none/seed=3"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Three finished runs of one group (the third is the victim), a failed one, and their sweep.json."""
    root = tmp_path_factory.mktemp("damaged") / "runs"
    runs = [make_run(root, method="none", seed=s, final=90.0 + s, fgsm=FGSM) for s in range(4)]
    (runs[3] / "summary.json").unlink()
    (runs[3] / "failed.json").write_text(json.dumps({"error": "lmix train: training diverged", "diverged": True}))
    write_sweep(root, runs)
    return root


def _strategy(template: Path, name: str) -> st.SearchStrategy[bytes]:
    folder = template if name == "sweep.json" else template / (FAILED_RUN if name == "failed.json" else VICTIM)
    data = (folder / name).read_bytes()
    if name == "metrics.jsonl":
        return damaged_jsonl(data)
    return damaged(data, yaml.safe_load, dump_yaml) if name == "config.yaml" else damaged(data, json.loads, dump_json)


def _damage(template: Path, tmp: str, name: str, content: bytes) -> Path:
    root = Path(tmp) / "runs"
    shutil.copytree(template, root)
    where = root if name == "sweep.json" else root / (FAILED_RUN if name == "failed.json" else VICTIM)
    (where / name).write_bytes(content)
    return root


def _check_accounted(report, root: Path, name: str) -> None:
    """The damaged run is used with what its files say, or not used with the file named; the others are intact."""
    runs = {r.dir: r for r in report.runs}
    for good in ("digits/simple_cnn/none/seed=0", "digits/simple_cnn/none/seed=1"):
        assert runs[good].status == USED
    victim, failed = runs[VICTIM], runs[FAILED_RUN]
    if name == "failed.json":
        assert victim.status == USED and failed.status in (FAILED, UNREADABLE)
        assert failed.status == FAILED or failed.detail.startswith("failed.json: ")
    else:
        assert failed.status == FAILED
        assert victim.status in (USED, UNREADABLE) and (victim.status == USED or name in victim.detail)
    for cell in report.cells:  # every number is the mean of what the used runs' summary files say
        finals = [json.loads((root / r.dir / "summary.json").read_text())["final_acc"] for r in cell.runs]
        assert cell.final.mean == pytest.approx(statistics.fmean(finals), abs=1e-9)
        assert all(r.status == USED for r in cell.runs)
    assert sum(len(c.runs) for c in report.cells) == sum(r.status == USED for r in report.runs)
    assert all("\n" not in r.detail for r in report.runs) and all("\n" not in p for p in report.problems)
    if name == "sweep.json":
        assert report.problems == [] or report.problems[0].startswith("sweep.json: ")


@pytest.mark.parametrize("name", [*RUN_FILES, "failed.json", "sweep.json"])
@FILE_SETTINGS
@given(data=st.data())
def test_a_damaged_record_is_accounted_for_in_every_output(template, name, data):
    content = data.draw(_strategy(template, name), label=name)
    with tempfile.TemporaryDirectory() as tmp:
        root = _damage(template, tmp, name, content)
        before = snapshot(root)
        report = build_report(root, paper="off")
        _check_accounted(report, root, name)
        listed = [r.dir for r in report.runs if r.status != USED]
        for text in (render_markdown(report), render_text_summary(report)):
            assert all(f"{d}: " in text or f"| {d} |" in text for d in listed)
        render_latex(report)
        json.dumps(report_json(report), allow_nan=False)  # report.json is strict JSON
        assert snapshot(root) == before


@settings(FILE_SETTINGS, max_examples=max(4, EXAMPLES // 5))
@given(data=st.data(), name=st.sampled_from([*RUN_FILES, "failed.json", "sweep.json"]))
def test_lmix_report_strict_on_a_damaged_record_is_0_or_1_and_one_line(template, capsys, data, name):
    content = data.draw(_strategy(template, name), label=name)
    with tempfile.TemporaryDirectory() as tmp:
        root = _damage(template, tmp, name, content)
        before = snapshot(root)
        code, out, err = run_cli(capsys, ["report", str(root), "--strict", "--out", str(Path(tmp) / "report")])
        assert snapshot(root) == before
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1  # the failed run, at least
    assert "runs are not finished and used" in err and FAILED_RUN in out
