"""Wall time of the default ``lmix compare`` and ``lmix train``, as a user runs them.

    python benchmarks/bench_cli.py                       # both commands, 3 runs each
    python benchmarks/bench_cli.py --commands compare --runs 5 --json durations.json

Each run is the real command line (``python -m lmix compare --out TMP``), started in a fresh
temporary folder, timed from start to exit (wall time), with the CPU time it used; the load
average before and after each run is recorded, because a shared machine slows every run down
(the wall time grows, the CPU time much less). Prints one line per run and, per command, the
median wall time, which is what ``lmix.experiments.commands.durations`` (and through it
README.md, docs/ and the commands' ``--help``) states.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The commands as the documentation states them: no argument but the output folder.
COMMANDS = {
    "compare": ["compare"],
    "train": ["train"],
}


def machine() -> str:
    """``AMD EPYC, 2 cores, Linux x86_64, Python 3.11.9, torch 2.x``: what the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(name: str) -> dict[str, float]:
    """One run of ``lmix NAME`` in a fresh folder: its wall and CPU time, and the load average around it."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        argv = [sys.executable, "-m", "lmix", *COMMANDS[name], "--out", str(Path(tmp) / "out")]
        load_before = os.getloadavg()[0]
        cpu_before, start = _children_cpu(), time.perf_counter()
        done = subprocess.run(argv, cwd=tmp, capture_output=True, text=True)
        seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu_before
        if done.returncode != 0:
            sys.exit(f"bench_cli: {' '.join(argv[2:])} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return {"seconds": seconds, "cpu_seconds": cpu, "load_before": load_before, "load_after": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", default="compare,train", help="comma-separated: compare, train")
    parser.add_argument("--runs", type=int, default=3, help="runs per command (default 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    names = [n.strip() for n in args.commands.split(",") if n.strip()]
    unknown = [n for n in names if n not in COMMANDS]
    if unknown or args.runs < 1:
        parser.error(f"--commands from {', '.join(COMMANDS)} and --runs >= 1 (got {args.commands!r}, {args.runs})")
    result: dict[str, object] = {"machine": machine(), "runs": args.runs, "commands": {}}
    print(f"bench_cli: {result['machine']}", flush=True)
    for name in names:
        runs = []
        for i in range(args.runs):
            run = time_command(name)
            runs.append(run)
            print(
                f"lmix {name} run {i + 1}/{args.runs}: {run['seconds']:.1f} s wall, {run['cpu_seconds']:.1f} s CPU "
                f"(1-minute load average {run['load_before']:.2f} before, {run['load_after']:.2f} after)",
                flush=True,
            )
        median = statistics.median(r["seconds"] for r in runs)
        result["commands"][name] = {"argv": ["lmix", *COMMANDS[name]], "median_s": median, "runs": runs}
        print(f"lmix {name}: median {median:.1f} s wall over {args.runs} runs", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
