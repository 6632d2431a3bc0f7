"""``lmix configs``: list the packaged training configs and sweep specs, or print one."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "configs",
        help="list the packaged paper configs and sweep specs",
        description="List the configs that ship with lmix: the paper's training configs (use one with "
        "`lmix train --config NAME`) and the sweep specs (`lmix sweep NAME`), with their descriptions. "
        "With NAME, print that file (e.g. `lmix configs table1 > my_table1.yaml` to edit a copy); "
        "--path prints where it lies instead.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="print this config's YAML")
    p.add_argument("--path", action="store_true", help="with NAME: print the file's path, not its contents")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmix.experiments.catalog import find_config, list_configs
    from lmix.experiments.cli import UsageError

    if args.name is None:
        if args.path:
            raise UsageError("lmix configs: --path needs a NAME (e.g. lmix configs table1 --path)")
        _print_list(list_configs())
        return 0
    found = find_config(args.name)
    if found is None:
        raise UsageError(f"lmix configs: no packaged config named {args.name!r}; `lmix configs` lists them")
    print(found.path if args.path else found.path.read_text(encoding="utf-8"), end="\n" if args.path else "")
    return 0


def _print_list(configs: list) -> None:
    sections = (
        ("train", "Training configs (lmix train --config NAME; one per row of the paper's tables):"),
        ("sweep", "Sweep specs (lmix sweep NAME; a grid of runs for a table, a figure or the CPU study):"),
    )
    width = max((len(c.name) for c in configs), default=0)
    for i, (kind, title) in enumerate(sections):
        if i:
            print()
        print(title)
        for config in (c for c in configs if c.kind == kind):
            print(f"  {config.name.ljust(width)}  {config.description}".rstrip())
