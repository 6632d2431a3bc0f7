"""Atomic file writes: write to a temporary file in the target's folder, then ``os.replace``.

A crash at any moment leaves either the old file or the new one, never a torn file. A write
that fails (a full disk, an unwritable folder, a file size limit) removes its temporary file,
leaves the previous file as it was and raises :class:`WriteError`, an ``OSError`` whose message
is one line naming the file and the reason (also when ``torch.save`` hid the ``OSError`` inside
a ``RuntimeError``).

:class:`RunLock`: the one lock of a run folder, an exclusive, non-blocking ``flock`` on
``RUN_DIR/.lock`` (one ``lmix train`` or sweep job per run folder).

:data:`FAILED_JSON`: the name of a run's failure record, here because its writer
(:mod:`lmix.experiments.train.failures`) and its reader (:mod:`lmix.experiments.records`, which
stays importable without torch) both import this module and neither may import the other.
:func:`write_folder`: a set of files written through a temporary folder, so that a failure
leaves the folder as it was.
:func:`not_a_folder`: why a path given for a folder to write into cannot be one, in one line.
:func:`not_a_file`: the same for a path given for a file to write.
"""

from __future__ import annotations

import errno as _errno
import fcntl
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar, TypeVar

from lmix.errors import LmixValueError

__all__ = [
    "FAILED_JSON",
    "WRONG_KIND_ERRNOS",
    "WriteError",
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_jsonl",
    "atomic_torch_save",
    "write_folder",
    "RunLock",
    "read_yaml",
    "not_a_folder",
    "not_a_file",
    "printable",
]

# Why a run's last attempt failed: written by ``lmix train`` (training diverged) and by ``lmix sweep``
# (any failure) into the run folder, which then has no summary.json; read by lmix report and lmix sweep.
FAILED_JSON = "failed.json"


# errno of a write that failed on a path of the wrong kind: a folder where the file goes (EISDIR), a
# file where one of its folders goes (ENOTDIR; EEXIST from mkdir)
WRONG_KIND_ERRNOS = (_errno.EISDIR, _errno.ENOTDIR, _errno.EEXIST)


class WriteError(OSError):
    """A file could not be written; ``str(err)`` is one line: the file and the reason.

    Where the path is of the wrong kind (:data:`WRONG_KIND_ERRNOS`), the reason names the path in
    the way: a folder where a file goes, or a file where a folder goes.
    """

    def __init__(self, path: str | os.PathLike, cause: OSError) -> None:
        code = cause.errno if cause.errno is not None else _errno.EIO
        reason = cause.strerror or str(cause) or type(cause).__name__
        super().__init__(code, reason, str(path))
        self.path = Path(path)
        self.wrong_kind = _wrong_kind(self.path, cause) if code in WRONG_KIND_ERRNOS else None

    def __str__(self) -> str:
        if self.wrong_kind is not None:
            return f"cannot write {str(self.path)!r}: {self.wrong_kind}"
        hint = " (disk full?)" if self.errno in (_errno.ENOSPC, _errno.EDQUOT) else ""
        return f"cannot write {str(self.path)!r}: {self.strerror}{hint}; the previous file, if any, is unchanged"


def _wrong_kind(path: Path, cause: OSError) -> str | None:
    """Which path is of the wrong kind for writing ``path``: the one the failed call named (a rename's
    target, a folder it could not make; else ``path``), or the file above it; None when none is now."""
    named = cause.filename2 if cause.filename2 is not None else cause.filename
    culprit = Path(os.fsdecode(named)) if named is not None else path
    try:
        if cause.errno == _errno.EISDIR:
            if not culprit.is_dir():
                return None
            problem = "is a folder, not a file; move that folder away or write elsewhere"
        else:
            culprit = next((p for p in (culprit, *culprit.parents) if p.exists()), path)
            if culprit.is_dir() or not culprit.exists():
                return None
            problem = "is a file, not a folder; give a path in a folder"
    except OSError:
        return None
    return f"{'it' if culprit == path else repr(str(culprit))} {problem}"


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


def write_folder(out_dir: str | os.PathLike, write: Callable[[Path], list[str]]) -> list[Path]:
    """Write a set of files into ``out_dir`` through a temporary folder; return their paths.

    ``write(tmp)`` writes the files into the empty folder ``tmp`` and returns their names, the
    file that names the others first. ``tmp`` is made in ``out_dir`` when it exists (its files
    then replace their namesakes one rename each, the first name last), else in the nearest
    folder above it that exists (it then becomes ``out_dir`` by one rename, its missing parents
    made only then). A failure (in ``write``, a full disk, a folder in the way of a file) leaves
    ``out_dir`` as it was and no temporary folder; other files in ``out_dir`` are left alone.

    Raises:
        WriteError: a file or folder could not be written; ``out_dir`` is unchanged.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise WriteError(out_dir, NotADirectoryError(_errno.ENOTDIR, "is a file, not a folder"))
    where = next(folder for folder in (out_dir, *out_dir.parents) if folder.is_dir())
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=where))
        os.chmod(tmp, 0o777 & ~_umask())  # a normal folder's mode once it is out_dir, not mkdtemp's 0700
    except OSError as err:
        raise WriteError(out_dir, err) from None
    try:
        try:
            names = write(tmp)
        except WriteError as err:  # name the file it was writing, not its temporary folder
            if not err.path.is_relative_to(tmp):
                raise
            raise WriteError(out_dir / err.path.relative_to(tmp), err) from None
        target = out_dir
        try:
            if where != out_dir:
                out_dir.parent.mkdir(parents=True, exist_ok=True)
                os.rename(tmp, out_dir)
            else:
                for name in names:
                    if (out_dir / name).is_dir():
                        target = out_dir / name
                        raise IsADirectoryError(_errno.EISDIR, "a folder is in the way")
                for name in [*names[1:], *names[:1]]:
                    target = out_dir / name
                    os.replace(tmp / name, target)
        except OSError as err:
            raise WriteError(target, err) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out_dir / name for name in names]


def read_yaml(path: str | os.PathLike, *, what: str) -> Any:
    """The document of a YAML file (``None`` when it is empty), read with ``yaml.safe_load``.

    Args:
        path: the file.
        what: what the file is, for messages ("config file", "sweep spec", "--paper file").

    Raises:
        FileNotFoundError: no such file.
        IsADirectoryError: ``path`` is a folder.
        LmixValueError: not valid YAML (the message names the file and YAML's first line).
    """
    import yaml  # the train extra; imported here so that io stays importable without it

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a folder, not a YAML file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise LmixValueError(f"{what} {str(path)!r} is not valid YAML: {str(err).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise LmixValueError(f"{what} {str(path)!r} is not text (UTF-8)") from None
    except (ValueError, TypeError, AttributeError, RecursionError) as err:  # yaml: 2001-13-45, !!float abc, [[[...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise LmixValueError(f"{what} {str(path)!r} is not valid YAML: {type(err).__name__}: {first}") from None


def printable(text: str) -> str:
    """``text`` on one printable line: control characters (a newline, or ``\\x1e``, which
    ``str.splitlines`` also breaks at) shown escaped. For text a damaged record may have supplied."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def not_a_folder(path: str | os.PathLike, *, name: str = "--out", hint: str = "") -> str | None:
    """Why ``path``, given as ``name`` for a folder, cannot be one; None when it can (it is a folder,
    or one can be made there).

    Args:
        hint: what to do instead, appended after ``"; "``.

    Returns:
        One line naming the path: ``"--out 'x' is a file, not a folder"``, ``"--out 'x/y' is inside
        'x', which is a file, not a folder"`` or ``"cannot reach --out 'x' (Permission denied)"``,
        then ``"; HINT"``.
    """
    path = Path(path)
    problem = None
    try:
        for folder in (path, *path.parents):
            if folder.is_dir():
                return None
            if folder.exists():
                where = "is a file" if folder == path else f"is inside {str(folder)!r}, which is a file"
                problem = f"{name} {str(path)!r} {where}, not a folder"
                break
    except PermissionError as err:
        problem = f"cannot reach {name} {str(path)!r} ({err.strerror})"
    if problem is None:
        return None
    return problem + (f"; {hint}" if hint else "")


def not_a_file(path: str | os.PathLike, *, name: str = "--out", example: str) -> str | None:
    """Why ``path``, given as ``name`` for a file to write, cannot be one; None when it can (a file
    there is replaced, or the folders above it exist or can be made). The advice names ``--out``,
    the flag that sets the file wherever a command writes one.

    Args:
        example: a file name to suggest inside ``path`` when it is a folder (``"mix.png"``).

    Returns:
        One line naming the path: ``"--out 'x' is a folder, not a file; give --out the file to write,
        e.g. 'x/mix.png'"``, or :func:`not_a_folder`'s line for a path inside a file.
    """
    path = Path(path)
    if path.is_dir():
        return (
            f"{name} {str(path)!r} is a folder, not a file; give --out the file to write, e.g. {str(path / example)!r}"
        )
    if path.exists():
        return None
    return not_a_folder(path, name=name, hint="give --out a path in a folder")


_Lock = TypeVar("_Lock", bound="RunLock")


@dataclass
class _Holding:
    """A run lock this process holds: its file descriptor, and the thread that took it how often."""

    key: str
    fd: int
    pid: int
    thread: int
    count: int = 1


class RunLock:
    """The lock of a run folder: an exclusive, non-blocking ``flock`` on ``RUN_DIR/.lock``.

    One process works on a run folder at a time: ``lmix train`` takes this lock for the whole
    run, and a sweep job takes it before it looks at the run and keeps it through training and
    the FGSM attack; whoever comes second is turned away. The file holds "host pid" of the
    holder, for the message of the process that is turned away. The kernel drops the lock when
    its process exits or dies, so a lock left by a killed process is simply taken. The file is
    removed on release (before unlocking, and :meth:`acquire` re-checks the inode), so a
    released lock leaves no file behind.

    Re-entrant within the thread that holds it, like :class:`threading.RLock`: the trainer a
    sweep job calls takes the lock its job already holds; the lock is released with the last
    :meth:`release`. Other threads and processes are turned away.
    """

    FILENAME = ".lock"
    _held: ClassVar[dict[str, _Holding]] = {}  # this process's locks, by lock file

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / self.FILENAME
        self._holding: _Holding | None = None

    def _mine(self) -> _Holding | None:
        """This thread's holding of the lock, if it has one."""
        held = self._held.get(os.path.realpath(self.path))
        if held is None or (held.pid, held.thread) != (os.getpid(), threading.get_ident()):
            return None
        return held

    def acquire(self) -> bool:
        """Take the lock (creating the run folder); False if another process or thread holds it."""
        if self._holding is not None:
            raise RuntimeError(f"lock {self.path} is already held by this object")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        held = self._mine()
        if held is not None:
            held.count += 1
            self._holding = held
            return True
        fd = self._flock()
        if fd is None:
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        key = os.path.realpath(self.path)
        self._holding = self._held[key] = _Holding(key, fd, os.getpid(), threading.get_ident())
        return True

    def _flock(self) -> int | None:
        """A descriptor of the current lock file, locked; None if another open lock holds it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            # The previous holder may have unlinked the file between our open and our flock: then
            # we hold a lock on an orphan inode and must retry on the current file.
            try:
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                return fd
            os.close(fd)

    def release(self) -> None:
        held, self._holding = self._holding, None
        if held is None:
            return
        held.count -= 1
        if held.count:
            return
        del self._held[held.key]
        try:
            self.path.unlink()  # before unlocking: a waiter then sees a new inode and retries
        except FileNotFoundError:
            pass
        os.close(held.fd)

    def is_held_elsewhere(self) -> bool:
        """Whether another process or thread holds it right now (takes and drops the lock to find out)."""
        if self._mine() is not None or not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDWR)  # never create (or delete) in a probe
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def holder(self) -> str:
        """ "pid N on HOST" of the recorded holder (may be stale if the lock is free)."""
        try:
            host, pid = self.path.read_text().split()
        except (OSError, ValueError):
            return "another process"
        return f"pid {pid} on {host}"

    def __enter__(self: _Lock) -> _Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
