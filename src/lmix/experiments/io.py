"""Atomic file writes: write to a temporary file in the target's folder, then ``os.replace``.

A crash at any moment leaves either the old file or the new one, never a torn file. A write
that fails (a full disk, an unwritable folder, a file size limit) removes its temporary file,
leaves the previous file as it was and raises :class:`WriteError`, an ``OSError`` whose message
is one line naming the file and the reason (also when ``torch.save`` hid the ``OSError`` inside
a ``RuntimeError``).
"""

from __future__ import annotations

import errno as _errno
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

__all__ = [
    "WriteError",
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_jsonl",
    "atomic_torch_save",
]


class WriteError(OSError):
    """A file could not be written; ``str(err)`` is one line: the file and the reason."""

    def __init__(self, path: str | os.PathLike, cause: OSError) -> None:
        code = cause.errno if cause.errno is not None else _errno.EIO
        reason = cause.strerror or str(cause) or type(cause).__name__
        super().__init__(code, reason, str(path))
        self.path = Path(path)

    def __str__(self) -> str:
        hint = " (disk full?)" if self.errno in (_errno.ENOSPC, _errno.EDQUOT) else ""
        return f"cannot write {str(self.path)!r}: {self.strerror}{hint}; the previous file, if any, is unchanged"


class _GuardedFile:
    """A binary file whose write/flush remember the first ``OSError`` they raised.

    ``torch.save`` calls ``write`` from C++ and re-raises any failure as a ``RuntimeError``;
    the remembered error says what really happened.
    """

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as err:
            self.error = self.error or err
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, fsync it, then rename it over ``path``.

    The file gets a normal file's mode (``0o666`` less the umask), not ``mkstemp``'s private 0600.

    Raises:
        WriteError: the folder, the temporary file or the rename failed at the OS level; the
            temporary file is gone and ``path`` is as it was.
    """
    path = Path(path)
    tmp: str | None = None
    guarded: _GuardedFile | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            guarded = _GuardedFile(f)
            write(guarded)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        cause = err if isinstance(err, OSError) else (guarded.error if guarded is not None else None)
        if cause is not None and not isinstance(err, WriteError) and isinstance(err, (OSError, RuntimeError)):
            raise WriteError(path, cause) from err
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))
