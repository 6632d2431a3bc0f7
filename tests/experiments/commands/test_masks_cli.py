"""``lmix masks``: studies too large to run are refused up front; the files are written all or none.

Too large: one line on stderr, exit code 2, before a mask is drawn and with nothing written (the
study is replaced by a tripwire here, so a refusal that comes late fails fast instead of filling
the memory). All or none: a write that fails at any file leaves the output folder as it was.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

import lmix.experiments.io as lmix_io
import lmix.experiments.masks as masks_module
from lmix.experiments.mask_limits import MAX_AT_ONCE, MAX_CONFIGURATIONS, MAX_N, MAX_SIDE
from tests.cli_helpers import one_line_error, run_cli
from tests.experiments.damage import snapshot

SMALL = ["--size", "8", "8", "--n", "2", "--k", "0"]


def _tree(root: Path) -> tuple[list[str], dict[str, bytes]]:
    """Every folder and file under ``root`` (relative), and the files' bytes."""
    folders = sorted(os.path.relpath(folder, root) for folder, _, _ in os.walk(root))
    return folders, snapshot(root)


@pytest.fixture
def tripwire(monkeypatch):
    """Fail at once if the command starts the study or draws a mask."""

    def started(*args, **kwargs):
        raise AssertionError("the study started")

    monkeypatch.setattr(masks_module, "run_mask_study", started)
    monkeypatch.setattr(masks_module, "_draw", started)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        # what a tester ran: the memory filled up, or a traceback after the study
        (["--size", "4096", "4096"], "at most 16,666,666 elements per mask (the example figure draws 6"),
        (["--size", "100000", "100000", "--n", "2", "--k", "0,1"], "at most 16,666,666 elements per mask"),
        (["--size", "512", "512", "512", "--n", "2", "--k", "0,1"], "at most 50,000,000 elements per mask"),
        (["--size", "8", "8", "--n", "100000000", "--k", "0"], f"--n must be at most {MAX_N:,}"),
        (["--size", "10000000", "--n", "2", "--k", "0,1"], f"every side must be at most {MAX_SIDE:,}"),
        (["--size", "2", "2", "100000000", "--n", "2", "--k", "0,1"], f"every side must be at most {MAX_SIDE:,}"),
        # one past each limit
        (["--size", "8", "--n", str(MAX_N + 1), "--k", "0"], f"--n must be at most {MAX_N:,}"),
        (["--size", str(MAX_SIDE + 1), "--n", "2", "--k", "0"], "every side must be at most"),
        (["--size", "2", str(MAX_SIDE + 1), "--n", "2", "--k", "0"], "every side must be at most"),
        (["--size", "8", "8", "--n", "2", "--k", ",".join(map(str, range(MAX_CONFIGURATIONS)))], "configurations"),
        (["--size", "8", "8", "--n", "2", "--k", "0,1,2", "--lam", ",".join(f"0.{i}" for i in range(1, 10))], "got 36"),
        (
            ["--size", "1024", "1024", "--n", str(MAX_AT_ONCE // 1024**2 + 1), "--k", "0"],
            "--n at most 95 with this size",
        ),
        (["--size", "4000", "4000", "--n", "6", "--k", ",".join(map(str, range(10)))], "mask elements in all"),
        (["--size", "16", "16", "16", "--n", str(MAX_AT_ONCE // 16**3 + 1), "--k", "0"], "at once"),
    ],
)
def test_studies_too_large_are_refused_up_front(capsys, tmp_path, tripwire, argv, needle):
    line = one_line_error(capsys, ["masks", *argv, "--out", str(tmp_path / "m")], needle, "at most")
    assert line.startswith("lmix masks: ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        [],  # the defaults: 32x32, 1,000 masks, 7 configurations
        ["--size", "256"],  # docs/masks.md's sequences
        ["--size", "32", "32", "32"],  # docs/masks.md's volumes
        ["--size", "100000"],  # long sequences
        ["--size", "32", "32", "--lam", "0.1,0.3,0.5"],  # docs/masks.md's other areas
        ["--size", "4000", "4000", "--n", "6", "--k", "0"],
        ["--size", "256", "256", "256", "--n", str(MAX_AT_ONCE // 256**3), "--k", "0"],
        ["--size", str(MAX_SIDE), "--n", str(MAX_AT_ONCE // MAX_SIDE), "--k", "0"],
    ],
)
def test_sensible_studies_are_not_refused(capsys, tmp_path, monkeypatch, argv):
    """The sizes the docs and tests use, and the largest of each kind, get as far as the study."""

    class Started(Exception):
        pass

    def started(**kwargs):
        raise Started

    monkeypatch.setattr(masks_module, "run_mask_study", started)
    with pytest.raises(Started):
        run_cli(capsys, ["masks", *argv, "--out", str(tmp_path / "m")])


@pytest.fixture(scope="module")
def earlier(tmp_path_factory) -> Path:
    """A folder with an earlier study (another seed) and a file of the user's."""
    out = tmp_path_factory.mktemp("earlier") / "m"
    masks_module.write_study(masks_module.run_mask_study(size=(8, 8), ks=[0], n=2, seed=1), out)
    (out / "notes.txt").write_text("the user's own file")
    return out


@pytest.mark.parametrize("over", [True, False], ids=["over-an-earlier-study", "new-folder"])
@pytest.mark.parametrize("failing", range(len(masks_module.FILES)))
def test_a_full_disk_leaves_the_output_folder_as_it_was(capsys, tmp_path, monkeypatch, earlier, failing, over):
    """The disk fills up at any one of the files: exit 1, one line, and the folder as it was before."""
    out = tmp_path / "m" if over else tmp_path / "new" / "m"
    if over:
        shutil.copytree(earlier, out)
    before = _tree(tmp_path)
    real = lmix_io.atomic_write
    calls = []

    def fills_up(path, write):
        calls.append(Path(path).name)
        if len(calls) > failing:
            raise lmix_io.WriteError(path, OSError(errno.ENOSPC, "No space left on device"))
        real(path, write)

    monkeypatch.setattr(lmix_io, "atomic_write", fills_up)
    code, out_text, err = run_cli(capsys, ["masks", *SMALL, "--out", str(out)])
    assert code == 1 and len(calls) == failing + 1
    assert len(err.strip().splitlines()) == 1 and "No space left" in err and "Traceback" not in err
    assert f"cannot write {str(out / calls[-1])!r}" in err  # the file, not its temporary folder
    assert _tree(tmp_path) == before  # no file changed or added, no temporary folder left
    assert "wrote" not in out_text


@pytest.mark.parametrize("name", masks_module.FILES)
def test_a_folder_in_the_way_of_a_file_is_a_user_error(capsys, tmp_path, tripwire, name):
    out = tmp_path / "p"
    (out / name).mkdir(parents=True)
    (out / name / "inside").write_text("x")
    before = _tree(tmp_path)
    one_line_error(capsys, ["masks", *SMALL, "--out", str(out)], f"{str(out / name)!r} is a folder", "--out")
    assert _tree(tmp_path) == before


def test_out_that_is_a_file_is_a_user_error(capsys, tmp_path, tripwire):
    (tmp_path / "f").write_text("x")
    one_line_error(capsys, ["masks", *SMALL, "--out", str(tmp_path / "f")], "is a file, not a folder")
    one_line_error(capsys, ["masks", *SMALL, "--out", str(tmp_path / "f" / "m")], "which is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_new_study_replaces_an_earlier_one_and_leaves_other_files(capsys, tmp_path, earlier):
    # the folder the earlier study made: a normal folder's mode, not the 0700 of its temporary folder
    assert oct(earlier.stat().st_mode & 0o777) == oct(0o777 & ~_umask())
    out = tmp_path / "m"
    shutil.copytree(earlier, out)
    old = (out / "masks.json").read_bytes()
    code, printed, err = run_cli(capsys, ["masks", *SMALL, "--out", str(out)])
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted([*masks_module.FILES, "notes.txt"])
    assert (out / "masks.json").read_bytes() != old and (out / "notes.txt").read_text() == "the user's own file"
    assert f"wrote 5 files to {out}" in printed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
