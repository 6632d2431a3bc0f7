"""``lmix report``: tables, statistics and figures over the finished runs in a folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_INCOMPLETE = 1  # --strict: the report is written, but some run is not finished and used
EXIT_USAGE = 2  # as every user error of the command line

EXIT_CODES = (
    "exit codes: 0 the report is written (with --strict: and every run under DIR is finished and used); "
    f"{EXIT_INCOMPLETE} with --strict: the report is written, but some run failed, is unfinished, still running "
    "or unreadable (or a sweep.json is unreadable); 2 a usage error (DIR is not a folder, no finished run "
    "under it, a bad --paper file, a --plan spec without an analysis or without runs under DIR) or the report could not be written (the files written before stay as they were)."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="paper-layout tables (Markdown, LaTeX), statistics and figures over finished runs",
        description="Collect every run under DIR, group the finished runs by data set, model, method and "
        "settings (seeds pooled), and write report.md, report.tex, report.json and PNG figures. Runs with "
        "fgsm.json (lmix attack) add FGSM robustness tables and curves. Every run folder is accounted for: "
        "finished and used, failed (failed.json), still running, unfinished, or unreadable (which file, what "
        "is wrong); a group with runs not in its numbers says so (n=2 of 3 where a sweep.json says how many "
        "runs were asked for).",
        epilog=EXIT_CODES,
    )
    p.add_argument("dir", metavar="DIR", help="folder holding run folders (searched recursively)")
    p.add_argument("--out", metavar="REPORT_DIR", help="where to write the report (default: DIR/report)")
    p.add_argument(
        "--paper",
        default="auto",
        metavar="auto|off|FILE.yaml",
        help="reference numbers beside ours: the LMix paper's (auto), none (off), or a YAML list of "
        "{dataset, model, method, acc} (default: auto)",
    )
    p.add_argument(
        "--plan",
        action="append",
        metavar="SPEC",
        help="compute the analysis plan that sweep spec SPEC (a packaged name or a path) declares, over the "
        "spec's runs under DIR, instead of the plans the sweep.json files carry (for records without one, or "
        "an out dir another spec's sweep.json describes); repeat for several specs",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="do not print the summary tables; the account of the runs (how many are used, failed, unfinished, "
        "unreadable, and why) is printed all the same",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help=f"exit with code {EXIT_INCOMPLETE} unless every run under DIR is finished and used (for CI and job "
        "arrays); the report is written either way",
    )
    p.set_defaults(func=run)


_OUT_HINT = "give --out a new folder or an earlier report's folder"


def run(args: argparse.Namespace) -> int:
    from lmix.experiments.io import WriteError, not_a_folder
    from lmix.experiments.records import check_writable
    from lmix.experiments.report import build_report, render_runs_text, render_text_summary, write_report

    plans = None
    if args.plan:
        from lmix.experiments.report.planned import plans_from_specs

        plans = plans_from_specs(args.plan, args.dir)
    out = Path(args.out) if args.out else Path(args.dir) / "report"
    problem = not_a_folder(out, name="--out" if args.out else "the report folder", hint=_OUT_HINT)
    if problem is not None and Path(args.dir).is_dir():  # DIR's own problem is said first (build_report)
        print(f"lmix report: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if Path(args.dir).is_dir():  # before the work: the report's folder must take new files (see write_report)
            check_writable(out / "report.md" if out.is_dir() else out)
        report = build_report(args.dir, paper=args.paper, plans=plans)
        paths = write_report(report, out)
    except WriteError as err:  # a full disk, an unwritable --out: the user's to fix, in one line
        print(f"lmix report: {err}", file=sys.stderr)
        return EXIT_USAGE
    # --quiet drops the tables, never the account of the runs (how many are used, failed, unreadable, ...)
    print(render_runs_text(report) if args.quiet else render_text_summary(report), end="")
    print(f"wrote {len(paths)} files to {out}: " + ", ".join(p.name for p in paths))
    if args.strict and not report.complete:
        print(_incomplete(report, out / "report.md"), file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


def _incomplete(report: Any, report_md: Path) -> str:
    """The one line --strict ends with: how many runs are not finished and used, and why."""
    from lmix.experiments.report.accounting import counts_text

    parts = []
    if report.not_used:
        parts.append(
            f"{len(report.not_used)} of {len(report.runs)} runs are not finished and used ({counts_text(report.runs)})"
        )
    parts += [f"unreadable {p}" for p in report.problems]
    return f"lmix report: --strict: {'; '.join(parts)}; see {report_md}"
