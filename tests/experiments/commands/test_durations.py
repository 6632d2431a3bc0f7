"""One stated duration for the default ``lmix compare`` and ``lmix train``: the measured one.

Every duration that README.md, docs/ or the commands' ``--help`` give for the bare commands must
be :attr:`Duration.phrase` of ``lmix.experiments.commands.durations`` (measured by
``benchmarks/bench_cli.py``), and docs/benchmarks.md must show the measured runs themselves.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lmix.experiments.commands import compare
from lmix.experiments.commands.durations import COMPARE, MACHINE, TRAIN, Duration
from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[3]
_NUMBER = r"(?:\d+(?:\.\d+)?|one|two|three|four|five|ten|a few|several)"
# "about 80 seconds", "~1 minute", "one to two minutes", "a one-minute run", "97-142 s", "a minute"
DURATION = re.compile(
    rf"(?:~\s*|\b)(?:(?:about|around|roughly|under|over|nearly|within|up to) |one to |\d+(?:\.\d+)?-)?"
    rf"{_NUMBER}[ -](?:s|secs?|seconds?|mins?|minutes?)\b|\ba minute\b",
    re.IGNORECASE,
)
# A mention of the bare command: as inline code, or a code line holding it and a comment at most.
BARE = {
    COMPARE: re.compile(r"`lmix compare`|^\s*lmix compare\s*(?:#.*)?$", re.M),
    TRAIN: re.compile(r"`lmix train`|^\s*lmix train\s*(?:#.*)?$", re.M),
}


def durations(text: str) -> list[str]:
    return [" ".join(m[0].split()) for m in DURATION.finditer(text)]


def contexts(text: str) -> list[str]:
    """A Markdown page's paragraphs (outside code) and its code lines, one claim context each."""
    out = []
    for i, part in enumerate(re.split(r"^```.*$", text, flags=re.M)):
        if i % 2:  # inside a fenced block: each line stands alone
            out += part.splitlines()
        else:
            out += re.split(r"\n\s*\n", part)
    return out


def claims() -> list:
    """(where, text, the commands it is about) for every page context and help text that names one."""
    found = []
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for page in pages:
        for context in contexts(page.read_text()):
            about = [d for d, bare in BARE.items() if bare.search(context)]
            if about:
                found.append(pytest.param(context, about, id=f"{page.relative_to(ROOT)}: {context.strip()[:50]}"))
    return found


def test_duration_pattern():
    text = "about 80 seconds; ~1 minute; one to two minutes; a one-minute run; 97-142 s; 3 seeds; a second run"
    assert durations(text) == ["about 80 seconds", "~1 minute", "one to two minutes", "one-minute", "97-142 s"]
    assert durations("it takes a few minutes, about 2.5 minutes or a minute") == [
        "a few minutes",
        "about 2.5 minutes",
        "a minute",
    ]


def test_phrase_rounds_the_median():
    assert Duration("x", (120.0, 131.0, 125.0), (0, 0, 0)).phrase == "about 2 minutes"
    assert Duration("x", (140.0, 150.0, 160.0), (0, 0, 0)).phrase == "about 2.5 minutes"
    assert Duration("x", (44.0, 41.0, 70.0), (0, 0, 0)).phrase == "about 40 seconds"
    assert COMPARE.command == "lmix compare" and TRAIN.command == "lmix train"
    for d in (COMPARE, TRAIN):
        assert len(d.seconds) == len(d.load) >= 3 and all(s > 0 for s in d.seconds)


@pytest.mark.parametrize(("context", "about"), claims())
def test_pages_state_the_measured_duration(context, about):
    allowed = {d.phrase for d in about}
    for claim in durations(context):
        assert claim in allowed, f"{claim!r} where the measured duration is {' or '.join(sorted(allowed))}:\n{context}"


def test_the_readme_and_getting_started_state_both():
    readme = (ROOT / "README.md").read_text()
    start = (ROOT / "docs" / "getting-started.md").read_text()
    for text in (readme, start):
        assert f"It takes {COMPARE.phrase} on a 2-core CPU" in " ".join(text.split())
    assert f"# {TRAIN.phrase} on a 2-core CPU" in readme
    assert f"# {TRAIN.phrase} on a 2-core CPU" in (ROOT / "docs" / "guide" / "training.md").read_text()


def test_help_states_the_measured_duration(capsys):
    with pytest.raises(SystemExit):
        run_cli(capsys, ["--help"])
    top = capsys.readouterr().out
    for d, name in ((COMPARE, "compare"), (TRAIN, "train")):
        line = " ".join(re.search(rf"^\s+{name}\s+(.*(?:\n\s{{8,}}\S.*)*)", top, flags=re.M)[1].split())
        assert durations(line) == [d.phrase], line
        with pytest.raises(SystemExit):
            run_cli(capsys, [name, "--help"])
        text = capsys.readouterr().out
        assert set(durations(text)) <= {d.phrase}, text
    # compare's own docstring and comments defer to the measurement
    assert durations(Path(compare.__file__).read_text()) == []


def test_benchmarks_page_shows_the_runs():
    """docs/benchmarks.md lists each measured run, the median and the machine, as durations.py has them."""
    text = " ".join((ROOT / "docs" / "benchmarks.md").read_text().split())
    assert MACHINE in text and "python benchmarks/bench_cli.py" in text
    for d in (COMPARE, TRAIN):
        runs = ", ".join(f"{s:.0f} s" for s in d.seconds)
        loads = ", ".join(f"{x:.1f}" for x in d.load)
        assert f"{d.command}: {runs} (load {loads}); median {d.median:.0f} s: {d.phrase}" in text
