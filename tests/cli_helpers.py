"""Run ``lmix`` commands in-process and check the CLI's user-error contract (one stderr line, exit 2)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from lmix.experiments.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], argv: Sequence[str]) -> tuple[int, str, str]:
    """Run ``lmix *argv`` and return its exit code, stdout and stderr (captured output is consumed)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(capsys: pytest.CaptureFixture[str], argv: Sequence[str], *needles: str) -> str:
    """Run ``lmix *argv``, assert it failed as a user error, and return the error line.

    A user error exits with code 2 and writes exactly one non-empty line on stderr, never a
    traceback; each of ``needles`` must appear in that line.
    """
    code, _, err = run_cli(capsys, argv)
    assert code == 2, f"exit code {code}, stderr: {err!r}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
