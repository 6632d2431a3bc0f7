"""How long the default ``lmix compare`` and ``lmix train`` take: measured once, stated from here.

The numbers are wall times of the commands as a user types them, with no argument but the
output folder, measured by ``python benchmarks/bench_cli.py`` (``--runs 3``: three runs of each,
one after the other) on this project's machine (:data:`MACHINE`). Its 2 cores are shared with
other jobs, so a run's time depends on the load: each run's 1-minute load average at its start is
kept beside it, and docs/benchmarks.md shows them all.
README.md, docs/ and the commands' ``--help`` state :attr:`Duration.phrase`, and
tests/experiments/commands/test_durations.py checks that every duration they give for these two
commands is that one.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

__all__ = ["Duration", "COMPARE", "TRAIN", "MACHINE"]

MACHINE = "AMD EPYC, 2 cores, Linux x86_64, Python 3.11.7, torch 2.14.1+cu130"


@dataclass(frozen=True)
class Duration:
    """Measured wall times of one command.

    Attributes:
        command: the command line measured, e.g. ``"lmix compare"``.
        seconds: the wall time of each run, in seconds.
        load: the 1-minute load average when each run started.
    """

    command: str
    seconds: tuple[float, ...]
    load: tuple[float, ...]

    @property
    def median(self) -> float:
        """The median wall time in seconds: the number the phrase rounds."""
        return statistics.median(self.seconds)

    @property
    def phrase(self) -> str:
        """``"about 2 minutes"``, ``"about 40 seconds"``: the median, rounded as the docs state it."""
        if self.median < 90:
            return f"about {max(10, round(self.median / 10) * 10)} seconds"
        minutes = round(self.median / 30) / 2  # to the half minute
        return f"about {minutes:g} minutes"


COMPARE = Duration("lmix compare", seconds=(75.0, 120.5, 75.9), load=(0.8, 2.0, 3.1))
TRAIN = Duration("lmix train", seconds=(23.0, 16.6, 24.5), load=(2.0, 2.2, 2.3))
