"""The ``lmix`` command line: ``lmix <command> [options]``.

Each command lives in ``lmix.experiments.commands.<name>`` and exposes ``add_parser(subparsers)`` and
``run(args) -> int``. Every user error becomes one line on stderr and exit code 2: commands
raise ``UsageError`` (or ValueError/TypeError/FileNotFoundError from validation), never a
traceback for a mistake the user can fix. ``LMIX_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["UsageError", "main", "build_parser", "COMMANDS"]

# Command name -> module under lmix.experiments.commands. Order is the order shown in --help.
COMMANDS: dict[str, str] = {}


class UsageError(Exception):
    """A user error: printed as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's default prints usage over several lines
        raise UsageError(f"{self.prog}: {message}")


def _register_builtin_commands() -> None:
    for name in ("compare", "train", "show", "attack", "sweep", "report", "models", "methods"):
        COMMANDS.setdefault(name, f"lmix.experiments.commands.{name}")


def build_parser() -> argparse.ArgumentParser:
    _register_builtin_commands()
    parser = _Parser(prog="lmix", description="LMix and mixed-sample augmentation: train, compare, visualise.")
    from lmix import __version__

    parser.add_argument("--version", action="version", version=f"lmix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module_name in COMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:
                continue  # command not built yet
            raise
        module.add_parser(sub)
    return parser


def _one_line(err: BaseException) -> str:
    text = str(err).strip().replace("\n", " ") or type(err).__name__
    return text if text.startswith("lmix") else f"lmix: error: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lmix`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return int(args.func(args) or 0)
    except (UsageError, ValueError, TypeError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        if os.environ.get("LMIX_DEBUG"):
            raise
        print(_one_line(err), file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Output piped into e.g. `head`: stop quietly, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("lmix: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
