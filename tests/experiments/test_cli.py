"""The ``lmix`` command line: user errors are one line and exit code 2; bugs show their traceback."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from lmix.errors import LmixError, LmixValueError
from lmix.experiments.cli import COMMANDS, USER_OS_ERRORS, UsageError, build_parser, main
from tests.cli_helpers import one_line_error


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
