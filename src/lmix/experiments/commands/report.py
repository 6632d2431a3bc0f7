"""``lmix report``: tables, statistics and figures over the finished runs in a folder."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="paper-layout tables (Markdown, LaTeX), statistics and figures over finished runs",
        description="Collect every summary.json under DIR, group the runs by data set, model, method and "
        "settings (seeds pooled), and write report.md, report.tex, report.json and PNG figures. Runs with "
        "fgsm.json (lmix attack) add FGSM robustness tables and curves; failed runs (failed.json) are listed, not counted.",
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
    p.add_argument("--quiet", action="store_true", help="do not print the summary table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lmix.experiments.report import build_report, render_text_summary, write_report

    report = build_report(args.dir, paper=args.paper)
    out = Path(args.out) if args.out else Path(args.dir) / "report"
    paths = write_report(report, out)
    if not args.quiet:
        print(render_text_summary(report), end="")
    print(f"wrote {len(paths)} files to {out}: " + ", ".join(p.name for p in paths))
    return 0
