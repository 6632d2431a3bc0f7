"""Peak memory and wall time of ``lmix masks`` at its limits (``lmix.experiments.mask_limits``).

    python benchmarks/bench_masks.py                 # every study below, one run each
    python benchmarks/bench_masks.py --only 0 1      # the first two

Each run is the real command line (``python -m lmix masks ... --out TMP``) in a fresh temporary
folder; its peak resident memory comes from the kernel's accounting of that one process
(``os.wait4``), its wall time from start to exit, with the load average before and after (a shared
machine slows every run down). The studies: the default, a long sequence, and each limit reached:
the most mask elements drawn at once (``MAX_AT_ONCE``) for a sequence, an image and a volume, the
most masks, the most configurations, the most elements in all. docs/masks.md ("Limits") states
what this printed.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time

from lmix.experiments.mask_limits import EXAMPLE_MASKS, MAX_AT_ONCE, MAX_CONFIGURATIONS, MAX_N, MAX_SIDE

SQUARE = math.isqrt(MAX_AT_ONCE // EXAMPLE_MASKS)  # the largest image side: 6 example masks at once
CUBE = round((MAX_AT_ONCE // 2) ** (1 / 3))  # the largest volume side: 2 masks at once
STUDIES = [
    [],  # the default: 32x32, 1,000 masks, 7 configurations
    ["--size", "100000"],  # a long sequence at the default n and k: 7 x 10^8 elements in all
    # the most mask elements drawn at once (MAX_AT_ONCE) for a sequence, an image and a volume
    ["--size", str(MAX_SIDE), "--n", str(MAX_AT_ONCE // MAX_SIDE), "--k", "0"],
    ["--size", str(SQUARE), str(SQUARE), "--n", str(EXAMPLE_MASKS), "--k", "0"],
    ["--size", str(CUBE), str(CUBE), str(CUBE), "--n", "2", "--k", "0"],
    # the most masks (MAX_N per configuration), and the most configurations at the longest side
    ["--size", "8", "8", "--n", str(MAX_N)],
    ["--size", str(MAX_SIDE), "--n", "2", "--k", ",".join(map(str, range(MAX_CONFIGURATIONS - 1)))],
    # the most mask elements in all (MAX_IN_ALL: 10 configurations at MAX_AT_ONCE)
    ["--size", str(MAX_SIDE), "--n", str(MAX_AT_ONCE // MAX_SIDE), "--k", ",".join(map(str, range(9)))],
    ["--size", str(SQUARE), str(SQUARE), "--n", str(EXAMPLE_MASKS), "--k", ",".join(map(str, range(9)))],
]


def run(argv: list[str]) -> dict[str, float]:
    """One run of ``lmix masks *argv``: peak memory (GB), wall time (s), the load average around it."""
    with tempfile.TemporaryDirectory(prefix="bench-masks-") as tmp:
        load = os.getloadavg()[0]
        start = time.perf_counter()
        command = [sys.executable, "-m", "lmix", "masks", *argv, "--out", os.path.join(tmp, "m")]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=tmp)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"lmix masks {' '.join(argv)} exited with {process.returncode}")
    return {"peak_gb": usage.ru_maxrss / 1024**2, "wall_s": wall, "load_before": load, "load_after": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", type=int, nargs="+", help="indices of the studies to run (default: all)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for i in args.only if args.only is not None else range(len(STUDIES)):
        result = run(STUDIES[i])
        print(
            f"[{i}] lmix masks {' '.join(STUDIES[i]) or '(defaults)'}: peak {result['peak_gb']:.2f} GB, "
            f"{result['wall_s']:.1f} s wall (load {result['load_before']:.1f} -> {result['load_after']:.1f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
