"""The ``lmix`` command line: user errors are one line and exit code 2; bugs show their traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from lmix._extras import MissingExtraModuleError
from lmix.data.timeseries import MissingTimeseriesExtraError
from lmix.errors import LmixError, LmixValueError
from lmix.experiments.cli import COMMANDS, USER_OS_ERRORS, UsageError, build_parser, main
from tests.cli_helpers import one_line_error, run_cli


def _failing(error: BaseException):
    def run(args):
        raise error

    return run


@pytest.mark.parametrize(
    "error",
    [
        LmixValueError("alpha must be > 0, got -1"),
        UsageError("lmix methods: --x must be >= 1"),
        *(cls(f"no such file: {cls.__name__}") for cls in USER_OS_ERRORS),
        # lmix's own missing-extra errors, also ModuleNotFoundErrors, of modules the CLI's table does not name
        MissingTimeseriesExtraError("the osuleaf data set needs the 'timeseries' extra", name="sktime"),
        MissingExtraModuleError("lmix.integrations.lightning", "lightning", "lightning"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(capsys, monkeypatch, error):
    monkeypatch.delenv("LMIX_DEBUG", raising=False)
    monkeypatch.setattr("lmix.experiments.commands.methods.run", _failing(error))
    line = one_line_error(capsys, ["methods"])
    assert str(error) in line and line.startswith("lmix")


def test_a_bug_is_not_a_user_error(monkeypatch):
    monkeypatch.setattr("lmix.experiments.commands.methods.run", _failing(ValueError("a bug")))
    with pytest.raises(ValueError, match="a bug"):
        main(["methods"])
    monkeypatch.setattr("lmix.experiments.commands.methods.run", _failing(TypeError("another bug")))
    with pytest.raises(TypeError, match="another bug"):
        main(["methods"])


def test_a_bug_shows_its_traceback_and_exits_1():
    code = textwrap.dedent(
        """
        import sys
        import lmix.experiments.commands.methods as methods
        from lmix.experiments.cli import main

        def run(args):
            raise ValueError("a deliberate bug")

        methods.run = run
        sys.exit(main(["methods"]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and "ValueError: a deliberate bug" in proc.stderr


def test_usage_errors_and_lmix_debug(capsys, monkeypatch):
    assert issubclass(UsageError, LmixError)
    one_line_error(capsys, ["methods", "--no-such-option"], "lmix: unrecognized arguments: --no-such-option")
    one_line_error(capsys, ["no-such-command"], "lmix: argument COMMAND: invalid choice")
    monkeypatch.setenv("LMIX_DEBUG", "1")
    monkeypatch.setattr("lmix.experiments.commands.methods.run", _failing(LmixValueError("shown in full")))
    with pytest.raises(LmixValueError, match="shown in full"):
        main(["methods"])


def test_no_help_text_shows_a_doubled_percent_sign(capsys):
    """argparse %-formats the options' help but not a description: '%%' there is printed as is."""
    build_parser()
    for command in COMMANDS:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "%%" not in capsys.readouterr().out, command


def _option_helps(text: str) -> dict[str, str]:
    """``--help`` output -> {option: its help text on one line} (argparse indents options by two spaces)."""
    helps: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"  (-\S+)", line)
        if match:
            current = match.group(1).rstrip(",")
            helps[current] = line[len(match.group(0)) :]
        elif current is not None and line.startswith("   "):
            helps[current] += " " + line.strip()
        else:
            current = None
    return {option: " ".join(text.split()) for option, text in helps.items()}


def test_every_option_states_at_most_one_default(capsys):
    """One default per flag, and never argparse's bare "(default: None)", in every command's --help."""
    build_parser()
    seen = 0
    for command in COMMANDS:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        for option, text in _option_helps(capsys.readouterr().out).items():
            seen += 1
            assert len(re.findall(r"\(default\b", text)) <= 1, f"lmix {command} {option}: {text}"
            assert "(default: None)" not in text, f"lmix {command} {option}: {text}"
    assert seen > 60  # the parser above found the options


# -- paths -------------------------------------------------------------------------------------
QUICK_TRAIN = ["--dataset", "digits", "--model", "simple_cnn", "--width", "8", "--epochs", "1", "--no-progress"]

# Every path argument of every command, given the wrong kind of path: {file} where a folder is
# expected, {dir} where a file is, {missing}, and paths that may not be read: {noperm} (a folder
# that cannot be listed or entered) and {noread} (a file that cannot be opened). {run}: a finished run.
PATH_CASES = [
    ["train", *QUICK_TRAIN, "--out", "{file}"],
    ["train", *QUICK_TRAIN, "--out", "{file}/run"],
    ["train", *QUICK_TRAIN, "--out", "{noperm}/run"],
    ["train", *QUICK_TRAIN, "--config", "{dir}"],
    ["train", *QUICK_TRAIN, "--config", "{missing}"],
    ["train", *QUICK_TRAIN, "--config", "{noread}"],
    ["train", *QUICK_TRAIN, "--dataset", "cifar10", "--data-root", "{file}"],
    ["train", *QUICK_TRAIN, "--dataset", "cifar10", "--data-root", "{missing}"],
    ["train", *QUICK_TRAIN, "--dataset", "cifar10", "--data-root", "{noperm}"],
    ["train", *QUICK_TRAIN, "--dataset", "imagefolder", "--data-root", "{noperm}"],
    ["train", "--resume", "--out", "{file}"],
    ["train", "--resume", "--out", "{missing}"],
    ["train", "--resume", "--out", "{noperm}"],
    ["sweep", "{dir}"],
    ["sweep", "{missing}"],
    ["sweep", "{noread}"],
    ["sweep", "table1", "--dry-run", "--out", "{file}"],
    ["report", "{file}"],
    ["report", "{missing}"],
    ["report", "{noperm}"],
    ["report", "{run}", "--out", "{file}"],
    ["report", "{run}", "--out", "{noperm}/report"],
    ["report", "{run}", "--paper", "{dir}"],
    ["report", "{run}", "--paper", "{missing}"],
    ["report", "{run}", "--paper", "{noread}"],
    ["report", "{run}", "--plan", "{dir}"],
    ["report", "{run}", "--plan", "{missing}"],
    ["report", "{run}", "--plan", "{noread}"],
    ["attack", "--run", "{file}"],
    ["attack", "--run", "{missing}"],
    ["attack", "--run", "{noperm}"],
    ["attack", "--run", "{run}", "--compare", "{file}"],
    ["attack", "--run", "{run}", "--limit", "8", "--out", "{dir}"],
    ["attack", "--run", "{run}", "--limit", "8", "--out", "{noperm}/fgsm.png"],
    ["show", "--out", "{dir}"],
    ["show", "--size", "16", "--out", "{pngdir}"],
    ["show", "--size", "16", "--out", "{file}/mix.png"],
    ["show", "--out", "{noperm}/mix.png"],
    ["show", "--images", "{file}"],
    ["show", "--images", "{missing}"],
    ["show", "--images", "{noperm}"],
    ["masks", "--n", "2", "--out", "{file}"],
    ["masks", "--n", "2", "--out", "{noperm}/masks"],
    ["compare", "--seeds", "1", "--epochs", "1", "--methods", "none", "--out", "{file}"],
    ["configs", "{dir}"],
]


def deny(monkeypatch: pytest.MonkeyPatch, folder: Path, file: Path) -> None:
    """Act as a user without permission on ``folder`` (mode 000: not listed, nothing inside reachable)
    and ``file`` (cannot be opened): root ignores chmod, so the calls are refused here instead."""
    import builtins
    import errno
    import io

    def refused(path: Any, *, inside_only: bool) -> bool:
        try:
            p = Path(os.path.abspath(os.fsdecode(path)))
        except TypeError:  # a file descriptor
            return False
        return folder in p.parents or (not inside_only and p in (folder, file))

    def guard(function: Any, *, inside_only: bool = False) -> Any:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(path, (str, bytes, os.PathLike)) and refused(path, inside_only=inside_only):
                raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
            return function(path, *args, **kwargs)

        return call

    opened = guard(io.open)
    monkeypatch.setattr(builtins, "open", opened)
    monkeypatch.setattr(io, "open", opened)
    for name in ("open", "listdir", "scandir"):
        monkeypatch.setattr(os, name, guard(getattr(os, name)))
    for name in ("stat", "lstat", "mkdir"):
        monkeypatch.setattr(os, name, guard(getattr(os, name), inside_only=True))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", *QUICK_TRAIN, "--eval-train", "0", "--out", str(run)]) == 0
    return run


def _paths(tmp_path: Path, run: Path) -> dict[str, Path]:
    """The paths ``PATH_CASES`` name, made under ``tmp_path`` (``noperm``, ``noread``: still with permissions)."""
    paths = {"file": tmp_path / "a-file", "dir": tmp_path / "a-folder", "missing": tmp_path / "missing.yaml"}
    paths |= {"noperm": tmp_path / "noperm", "noread": tmp_path / "noread.yaml", "run": run}
    paths["pngdir"] = tmp_path / "folder.png"  # a folder named as a PNG file
    paths["file"].write_text("not a folder\n")
    paths["noread"].write_text("epochs: 1\n")
    for folder in ("dir", "noperm", "pngdir"):
        paths[folder].mkdir()
    return paths


def _argv(case: list[str], paths: dict[str, Path]) -> list[str]:
    return [a.format(**{k: str(v) for k, v in paths.items()}) for a in case]


@pytest.mark.parametrize("case", PATH_CASES, ids=[" ".join(a) for a in PATH_CASES])
def test_every_path_argument_of_the_wrong_kind_is_one_line_and_exit_2(
    capsys, tmp_path, monkeypatch, finished_run, case
):
    monkeypatch.chdir(tmp_path)  # commands that write a default folder write it here
    paths = _paths(tmp_path, finished_run)
    argv = _argv(case, paths)
    given = next(p for key, p in paths.items() if key != "run" and any(str(p) in a for a in argv))
    deny(monkeypatch, paths["noperm"], paths["noread"])
    existed = given.exists()
    line = one_line_error(capsys, argv)
    assert given.name in line, line  # the message names the path
    if existed:  # and says what it is, not that it is missing or merely "exists"
        assert "does not exist" not in line and "File exists" not in line, line


# Every command's output path given as a file where a folder is expected, inside a file, or (lmix
# attack's --out, a PNG) as a folder: the line says so in lmix train's wording and names the path.
COMPARE_QUICK = ["--seeds", "1", "--epochs", "1", "--methods", "none"]
OUT_CASES = [
    (["train", *QUICK_TRAIN, "--out", "{file}"], "--out '{file}' is a file, not a folder"),
    (["train", *QUICK_TRAIN, "--out", "{file}/run"], "--out '{file}/run' is inside '{file}', which is a file, not a"),
    (["sweep", "table1", "--dry-run", "--out", "{file}"], "lmix sweep: --out '{file}' is a file, not a folder"),
    (["sweep", "table1", "--dry-run", "--out", "{file}/sub"], "lmix sweep: --out '{file}/sub' is inside '{file}', "),
    (["sweep", "table1", "--out", "{file}"], "lmix sweep: --out '{file}' is a file, not a folder"),
    (["report", "{file}"], "lmix report: DIR '{file}' is a file, not a folder"),
    (["report", "{file}/runs"], "lmix report: DIR '{file}/runs' is inside '{file}', which is a file, not a folder"),
    (["report", "{run}", "--out", "{file}"], "lmix report: --out '{file}' is a file, not a folder"),
    (["report", "{run}", "--out", "{file}/rep"], "lmix report: --out '{file}/rep' is inside '{file}', which is a"),
    (["attack", "--run", "{run}", "--limit", "8", "--out", "{dir}"], "lmix attack: --out '{dir}' is a folder, not a"),
    (["attack", "--run", "{run}", "--limit", "8", "--out", "{file}/a.png"], "--out '{file}/a.png' is inside '{file}'"),
    (["compare", *COMPARE_QUICK, "--out", "{file}"], "lmix compare: --out '{file}' is a file, not a folder"),
    (["compare", *COMPARE_QUICK, "--out", "{file}/c"], "lmix compare: --out '{file}/c' is inside '{file}', which"),
    (["show", "--size", "16", "--out", "{pngdir}"], "lmix show: --out '{pngdir}' is a folder, not a file; give --out"),
    (["show", "--out", "{file}/a.png"], "lmix show: --out '{file}/a.png' is inside '{file}', which is a file, not a"),
    (["show", "--out", "{file}/sub/a.png"], "lmix show: --out '{file}/sub/a.png' is inside '{file}', which is a file"),
    (["show", "--images", "{dir}", "--out", "{file}/a.png"], "lmix show: --out '{file}/a.png' is inside '{file}'"),
]


@pytest.mark.parametrize("case, needle", OUT_CASES, ids=[" ".join(c) for c, _ in OUT_CASES])
def test_an_output_path_of_the_wrong_kind_is_said_so_before_anything_is_written(
    capsys, tmp_path, monkeypatch, finished_run, case, needle
):
    from tests.experiments.damage import snapshot

    monkeypatch.chdir(tmp_path)
    paths = _paths(tmp_path, finished_run)
    before = (snapshot(tmp_path), snapshot(finished_run))
    line = one_line_error(capsys, _argv(case, paths))
    assert needle.format(**{k: str(v) for k, v in paths.items()}) in line, line
    assert (snapshot(tmp_path), snapshot(finished_run)) == before  # no run attacked, no folder, no file


# A file written on a path of the wrong kind past a command's own checks: a folder where the file goes
# (EISDIR), a file where its folder goes (EEXIST from mkdir) or above that folder (ENOTDIR). The
# user's path, not a fault of the disk: exit 2, and the line says which part is of the wrong kind.
WRONG_KIND_WRITES = [
    ("{dir}", "lmix: error: cannot write '{dir}': it is a folder, not a file; move that folder away"),
    ("{file}/x.json", "lmix: error: cannot write '{file}/x.json': '{file}' is a file, not a folder; give a path"),
    ("{file}/sub/x.json", "lmix: error: cannot write '{file}/sub/x.json': '{file}' is a file, not a folder; give"),
    ("{file}", None),  # a file is replaced: no error
]


@pytest.mark.parametrize("target, needle", WRONG_KIND_WRITES, ids=[t for t, _ in WRONG_KIND_WRITES])
def test_a_write_on_a_path_of_the_wrong_kind_is_one_line_exit_2(capsys, tmp_path, monkeypatch, target, needle):
    from lmix.experiments.io import atomic_write_text

    paths = {k: str(v) for k, v in _paths(tmp_path, tmp_path).items()}
    monkeypatch.setattr(
        "lmix.experiments.commands.methods.run", lambda args: atomic_write_text(target.format(**paths), "{}")
    )
    if needle is None:
        assert run_cli(capsys, ["methods"])[0] == 0
        return
    line = one_line_error(capsys, ["methods"])
    assert needle.format(**paths) in line, line
    assert "previous file" not in line and "File exists" not in line, line


def test_a_file_a_command_writes_into_its_folder_named_when_a_folder_stands_there(capsys, tmp_path, finished_run):
    """The line names the file in the way, also where the command's WriteError names the folder it writes
    into (lmix report's --out)."""
    (tmp_path / "rep" / "report.md").mkdir(parents=True)
    line = one_line_error(capsys, ["report", str(finished_run), "--out", str(tmp_path / "rep")])
    assert f"{str(tmp_path / 'rep' / 'report.md')!r}" in line and "is a folder, not a file" in line, line


@pytest.mark.parametrize(
    "code, exit_code",
    [
        *((code, 2) for code in ("EACCES", "EPERM", "EISDIR", "ENOTDIR", "EEXIST")),  # the user's path
        *((code, 1) for code in ("ENOSPC", "EDQUOT", "EROFS", "EIO", "EFBIG")),  # the machine's
    ],
)
def test_a_write_error_s_exit_code_says_whose_mistake_it_is(capsys, tmp_path, monkeypatch, code, exit_code):
    import errno

    from lmix.experiments.io import WriteError

    number = getattr(errno, code)
    error = WriteError(tmp_path / "out.json", OSError(number, os.strerror(number)))
    monkeypatch.setattr("lmix.experiments.commands.methods.run", _failing(error))
    status, _, err = run_cli(capsys, ["methods"])
    assert status == exit_code and len(err.strip().splitlines()) == 1 and "out.json" in err, err


_RUN_CASES = """
import contextlib, io, json, sys
from lmix.experiments.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


@pytest.mark.slow  # one more process, permissions dropped
def test_the_denied_paths_fail_as_under_real_permissions(capsys, tmp_path, monkeypatch, finished_run):
    """``deny`` stands for real permissions: the denied cases, run once more in a process where
    mode 000 holds (also for root), print the same lines."""
    from tests.experiments.damage import run_unprivileged

    cases = [case for case in PATH_CASES if any("{noperm}" in a or "{noread}" in a for a in case)]
    real_dir, simulated_dir = tmp_path / "real", tmp_path / "simulated"
    real_dir.mkdir()
    simulated_dir.mkdir()
    real = _paths(real_dir, finished_run)
    real["noperm"].chmod(0)
    real["noread"].chmod(0)
    try:
        code, out, err = run_unprivileged(
            [sys.executable, "-c", _RUN_CASES, json.dumps([_argv(c, real) for c in cases])], cwd=real_dir
        )
    finally:
        real["noperm"].chmod(0o755)
        real["noread"].chmod(0o644)
    assert code == 0, err
    simulated = _paths(simulated_dir, finished_run)
    monkeypatch.chdir(simulated_dir)
    deny(monkeypatch, simulated["noperm"], simulated["noread"])
    for case, (real_code, real_err) in zip(cases, json.loads(out)):
        code, _, sim_err = run_cli(capsys, _argv(case, simulated))
        assert (code, sim_err.replace(str(simulated_dir), "ROOT")) == (
            real_code,
            real_err.replace(str(real_dir), "ROOT"),
        )
