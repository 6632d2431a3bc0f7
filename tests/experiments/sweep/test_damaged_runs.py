"""lmix sweep over run folders with a damaged record (hypothesis): it reads them with the report's
checked readers, its dry run and its real run agree, it agrees with lmix report, and it never trains
over (nor writes into) a folder whose record cannot be used; a read-only --out is one line."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lmix.experiments.report.collect import UNREADABLE, collect_runs
from lmix.experiments.sweep import expand, parse_spec, run_sweep
from tests.cli_helpers import run_cli
from tests.experiments.damage import (
    EXAMPLES,
    FILE_SETTINGS,
    damaged,
    damaged_jsonl,
    dump_json,
    dump_yaml,
    read_only,
    run_lmix,
    snapshot,
)

from .conftest import TINY_SPEC, FakeTrain, use_trainer

RUNS = [r.name for r in expand(parse_spec(TINY_SPEC), Path("o"))]
VICTIM, FAILED_RUN = RUNS[0], RUNS[-1]
FGSM = {"eps": [0.0, 2 / 255], "eps_255": [0.0, 2.0], "acc": [50.0, 40.0], "limit": None}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, Path]:
    """A sweep's output folder (six runs by the fake trainer, the last one failed; the first one attacked)
    and its spec file."""
    tmp = tmp_path_factory.mktemp("damaged_sweep")
    spec = tmp / "spec.yaml"
    spec.write_text(yaml.safe_dump(TINY_SPEC))
    out = tmp / "out"
    with pytest.MonkeyPatch.context() as mp:
        use_trainer(mp, FakeTrain(fail_on={6}))
        run_sweep(parse_spec(TINY_SPEC), out, log=lambda line: None)
    (out / VICTIM / "fgsm.json").write_text(json.dumps(FGSM))
    assert (out / FAILED_RUN / "failed.json").is_file()
    return out, spec


def _strategy(template: Path, name: str) -> st.SearchStrategy[bytes]:
    data = (template / (FAILED_RUN if name == "failed.json" else VICTIM) / name).read_bytes()
    if name == "metrics.jsonl":
        return damaged_jsonl(data)
    return damaged(data, yaml.safe_load, dump_yaml) if name == "config.yaml" else damaged(data, json.loads, dump_json)


@pytest.mark.parametrize("name", ["summary.json", "config.yaml", "metrics.jsonl", "fgsm.json", "failed.json"])
@settings(FILE_SETTINGS, max_examples=max(3, EXAMPLES // 5))
@given(data=st.data())
def test_the_dry_run_the_real_run_and_the_report_agree_on_a_damaged_record(template, capsys, monkeypatch, name, data):
    out_template, spec = template
    content = data.draw(_strategy(out_template, name), label=name)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        shutil.copytree(out_template, out)
        folder = out / (FAILED_RUN if name == "failed.json" else VICTIM)
        (folder / name).write_bytes(content)
        (victim,) = [r for r in collect_runs(out).runs if r.dir == folder.relative_to(out).as_posix()]
        before = snapshot(out)
        fake = FakeTrain()
        use_trainer(monkeypatch, fake)
        dry = run_cli(capsys, ["sweep", str(spec), "--out", str(out), "--dry-run"])
        assert snapshot(out) == before  # a dry run writes nothing
        real = run_cli(capsys, ["sweep", str(spec), "--out", str(out)])
        assert dry[0] == real[0] and dry[2] == real[2], (dry, real)  # the dry run says what the real run does
        if real[0] == 2:  # refused: nothing trained, nothing written
            (line,) = real[2].strip().splitlines()
            assert snapshot(out) == before and fake.calls == []
            if "holds a different run" not in line:  # a valid config.yaml of another run is a conflict, as ever
                assert victim.status == UNREADABLE
                assert line.startswith(f"lmix sweep: run folder '{folder}' has an unreadable record: {victim.detail};")
                assert f"unreadable {folder.relative_to(out).as_posix()}  ({victim.detail})" in dry[1]
        else:  # usable, as the report sees it: skipped as done (the failed run retried)
            assert victim.status != UNREADABLE and real[0] == 0, (victim.detail, real)
            assert fake.calls == [str(out / FAILED_RUN)]
            if name != "failed.json":
                assert (folder / name).read_bytes() == content


@pytest.mark.parametrize(
    "name, content, detail",
    [
        ("config.yaml", b"\x8f\x00\xff\xfe random bytes", "config.yaml: is not text (UTF-8)"),
        (
            "summary.json",
            None,
            "summary.json: final_acc must be an accuracy in percent (a number in [0, 100]), got 'abc'",
        ),
    ],
)
def test_the_tester_s_damaged_runs_stop_the_sweep_in_one_line(
    template, tmp_path, capsys, monkeypatch, name, content, detail
):
    out_template, spec = template
    out = tmp_path / "out"
    shutil.copytree(out_template, out)
    path = out / VICTIM / name
    if content is None:
        content = json.dumps({**json.loads(path.read_text()), "final_acc": "abc"}).encode()
    path.write_bytes(content)
    use_trainer(monkeypatch, FakeTrain())
    before = snapshot(out)
    for dry in (True, False):
        code, text, err = run_cli(capsys, ["sweep", str(spec), "--out", str(out)] + (["--dry-run"] if dry else []))
        assert code == 2 and "Traceback" not in err
        assert err == (
            f"lmix sweep: run folder '{out / VICTIM}' has an unreadable record: {detail}; lmix sweep does not train "
            "over a run's records: repair that file, or move it (or the folder) away, and re-run (the run is then "
            "trained, or resumed from its checkpoint)\n"
        )
        assert (f"unreadable {VICTIM}  ({detail})" in text) == dry
    assert snapshot(out) == before


def test_a_finished_run_that_diverged_is_done_and_says_so(template, tmp_path, capsys, monkeypatch):
    out_template, spec = template
    out = tmp_path / "out"
    shutil.copytree(out_template, out)
    rows = [json.loads(line) for line in (out / VICTIM / "metrics.jsonl").read_text().splitlines()]
    rows[1]["train_loss"] = float("nan")
    (out / VICTIM / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    use_trainer(monkeypatch, FakeTrain())
    note = "diverged in epoch 2 (metrics.jsonl): train_loss is nan"
    code, text, _ = run_cli(capsys, ["sweep", str(spec), "--out", str(out), "--dry-run"])
    assert code == 0 and f"done    {VICTIM}  (final 50.00%, best 60.00%; {note})" in text
    code, text, _ = run_cli(capsys, ["sweep", str(spec), "--out", str(out)])
    assert code == 0 and f"{VICTIM}: skip (done), final 50.00%; {note}" in text


def test_a_read_only_out_folder_is_one_line_and_nothing_is_written(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(TINY_SPEC))
    out = tmp_path / "ro"
    out.mkdir()
    with read_only(out):
        code, text, err = run_lmix(["sweep", str(spec), "--out", str(out)])
        assert list(out.iterdir()) == []
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"lmix sweep: cannot write '{out / 'sweep.json'}': Permission denied")
    assert "Permission denied" not in text
