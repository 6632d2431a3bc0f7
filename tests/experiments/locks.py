"""Hold a run folder's lock as someone else would, for tests of whoever is turned away."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from lmix.experiments.io import RunLock


@contextlib.contextmanager
def held_by_another_thread(folder: str | os.PathLike) -> Iterator[RunLock]:
    """Hold ``folder``'s :class:`RunLock` in another thread while the block runs.

    The lock is re-entrant within its thread, so a holder in the test's own thread would let the
    code under test in; another thread is turned away as another process is.
    """
    lock = RunLock(folder)
    taken, done = threading.Event(), threading.Event()
    failed: list[str] = []

    def hold() -> None:
        if lock.acquire():
            taken.set()
            done.wait()
            lock.release()
        else:
            failed.append(lock.holder())
            taken.set()

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait()
    try:
        assert not failed, f"the lock was already held ({failed[0]})"
        yield lock
    finally:
        done.set()
        thread.join()
