"""The ``lmix`` command line: ``lmix <command> [options]``.

Each command lives in ``lmix.experiments.commands.<name>`` and exposes ``add_parser(subparsers)`` and
``run(args) -> int``. Every user error becomes one line on stderr and exit code 2, never a
traceback for a mistake the user can fix: the errors lmix raises on purpose
(:class:`lmix.errors.LmixError`, which the commands' ``UsageError`` is too) and the file-system
errors of paths the user gave (:data:`USER_OS_ERRORS`; a file that may not be written there or
whose path is of the wrong kind, a ``WriteError`` of :data:`USER_WRITE_ERRNOS`, too). A file that
cannot be written for want of space or on a read-only file system is one line and exit code 1.
Any other exception is a bug and shows its traceback (exit code 1). ``LMIX_DEBUG=1`` shows the
traceback of user errors too.

The commands need the ``train`` extra (``pip install -e '.[train]'`` in a clone); on a core install
(torch alone) ``lmix --version``, ``lmix methods``, ``lmix models`` and ``lmix configs`` work,
and any other command says in one line which extra to install (exit code 2).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

from lmix import __version__
from lmix._extras import install_hint
from lmix.errors import LmixError
from lmix.experiments.commands import UsageError
from lmix.experiments.io import WRONG_KIND_ERRNOS, WriteError

__all__ = [
    "UsageError",
    "MissingExtraError",
    "main",
    "build_parser",
    "COMMANDS",
    "EXTRA_OF_MODULE",
    "USER_OS_ERRORS",
    "USER_WRITE_ERRNOS",
]

# Command name -> module under lmix.experiments.commands. Order is the order shown in --help.
COMMANDS: dict[str, str] = {}


# Top-level module -> the extra that installs it. A command failing to import one of these is a
# missing install, not a bug: the user is told which extra to install.
EXTRA_OF_MODULE: dict[str, str] = {
    **dict.fromkeys(("torchvision", "numpy", "matplotlib", "yaml", "tqdm", "sklearn", "scipy", "PIL"), "train"),
    "timm": "timm",
    "tensorboard": "tensorboard",
}


# A path the user gave that does not exist, is the wrong kind of file (a file where a folder is
# expected: FileExistsError from mkdir), or may not be read or written.
USER_OS_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)

# A file a command writes that the user can make writable: no permission on the path they gave
# (EACCES, EPERM), or a path of the wrong kind, a folder where the file goes or a file where one of
# its folders goes (WRONG_KIND_ERRNOS). A full disk, a read-only file system or an I/O error is the
# machine's.
USER_WRITE_ERRNOS = (errno.EACCES, errno.EPERM, *WRONG_KIND_ERRNOS)


class MissingExtraError(UsageError):
    """A command needs a package of an extra that is not installed."""

    def __init__(self, command: str | None, module: str) -> None:
        extra = EXTRA_OF_MODULE[module.split(".")[0]]
        what = f"lmix {command}" if command else "this command"
        super().__init__(
            f"lmix: error: {what} needs the '{extra}' extra (no module named {module!r}): {install_hint(extra)}"
        )


def _missing_extra_module(err: ModuleNotFoundError) -> str | None:
    """The missing module's name when ``err`` is an uninstalled extra's package, else None."""
    name = err.name or ""
    return name if name.split(".")[0] in EXTRA_OF_MODULE else None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's default prints usage over several lines
        raise UsageError(f"{self.prog}: {message}")


def _register_builtin_commands() -> None:
    for name in ("compare", "train", "show", "attack", "sweep", "report", "models", "methods", "configs", "masks"):
        COMMANDS.setdefault(name, f"lmix.experiments.commands.{name}")


def build_parser() -> argparse.ArgumentParser:
    _register_builtin_commands()
    parser = _Parser(prog="lmix", description="LMix and mixed-sample augmentation: train, compare, visualise.")
    parser.add_argument("--version", action="version", version=f"lmix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
            module.add_parser(sub)
        except ModuleNotFoundError as err:
            missing = _missing_extra_module(err)
            if missing is None:
                raise
            _add_unavailable(sub, name, missing)
    return parser


def _add_unavailable(sub: argparse._SubParsersAction, name: str, missing: str) -> None:
    """Register ``name`` as a command that only says which extra it needs (any arguments accepted)."""
    # add_parser may have registered the command before its import failed; replace that entry.
    sub._name_parser_map.pop(name, None)
    sub._choices_actions[:] = [action for action in sub._choices_actions if action.dest != name]
    error = MissingExtraError(name, missing)
    # prefix_chars no argument starts with: every argument is taken as a positional one, and ignored.
    install = str(error).rsplit(": ", 1)[-1]
    p = sub.add_parser(name, help=f"(needs {install})", add_help=False, prefix_chars="\0")
    p.add_argument("ignored", nargs="*", help=argparse.SUPPRESS)

    def fail(args: argparse.Namespace) -> int:
        raise error

    p.set_defaults(func=fail)


def _one_line(err: BaseException) -> str:
    text = _os_error_text(err) or str(err).strip().replace("\n", " ") or type(err).__name__
    return text if text.startswith("lmix") else f"lmix: error: {text}"


def _os_error_text(err: BaseException) -> str | None:
    """``'PATH': what is wrong`` for an OSError about a path, in place of ``[Errno 13] ...: 'PATH'``."""
    if not isinstance(err, OSError) or err.filename is None or not err.strerror or isinstance(err, WriteError):
        return None
    path = os.fsdecode(err.filename)
    if isinstance(err, FileExistsError) and os.path.exists(path) and not os.path.isdir(path):
        return f"{path!r} is a file where a folder is expected; give a folder there (a new one or an empty one)"
    return f"{path!r}: {err.strerror}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lmix`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # On a core install (no numpy) torch warns at import; the commands that run there do not need
    # numpy, and the others say which extra to install.
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)
    args = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return int(args.func(args) or 0)
    except ModuleNotFoundError as err:
        missing = _missing_extra_module(err)
        if missing is None and isinstance(err, LmixError) and not os.environ.get("LMIX_DEBUG"):
            # lmix's own "needs the X extra" error (e.g. sktime, the 'timeseries' extra): its message says it.
            print(_one_line(err), file=sys.stderr)
            return 2
        if missing is None or os.environ.get("LMIX_DEBUG"):
            raise
        print(MissingExtraError(getattr(args, "command", None), missing), file=sys.stderr)
        return 2
    except WriteError as err:
        # A file a command writes: no permission on the path the user gave, or a path of the wrong
        # kind, is theirs to fix (2); a full disk or a read-only file system is the machine's (1).
        # The previous file is intact.
        if os.environ.get("LMIX_DEBUG"):
            raise
        print(_one_line(err), file=sys.stderr)
        return 2 if err.errno in USER_WRITE_ERRNOS else 1
    except (LmixError, *USER_OS_ERRORS) as err:
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
