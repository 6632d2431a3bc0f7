"""Atomic writes (a failed write leaves the previous file intact; files get a normal mode) and the run lock."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from lmix.experiments.io import RunLock, atomic_write, atomic_write_json
from tests.experiments.locks import held_by_another_thread


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "summary.json"
    atomic_write_json(path, {"final_acc": 1.0})
    before = path.read_bytes()

    def crash(f):
        f.write(b'{"final_acc": 2')
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, crash)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", [])
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


def test_os_failure_is_one_line_write_error_and_leaves_nothing(tmp_path):
    import errno

    from lmix.experiments.io import WriteError

    path = tmp_path / "metrics.jsonl"
    atomic_write_json(path, [1])
    before = path.read_bytes()

    def full_disk(f):
        f.write(b"[1, 2")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError) as info:
        atomic_write(path, full_disk)
    err = info.value
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert "\n" not in str(err) and str(path) in str(err) and "disk full" in str(err)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(WriteError, match="cannot write"):
        atomic_write_json(blocker / "sub" / "x.json", {})  # a folder that cannot exist


def test_torch_save_failing_in_the_kernel_is_a_write_error(tmp_path):
    """torch.save re-raises a failed write as RuntimeError; the real OSError (EFBIG here) comes out."""
    import errno
    import subprocess
    import sys

    path = tmp_path / "checkpoint.pt"
    atomic_write(path, lambda f: f.write(b"old"))
    code = f"""
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
import torch
from lmix.experiments.io import WriteError, atomic_torch_save
try:
    atomic_torch_save({str(path)!r}, {{"w": torch.zeros(100_000)}})
except WriteError as err:
    print("WriteError", err.errno)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.split() == ["WriteError", str(errno.EFBIG)], res.stderr[-2000:]
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_the_lock_turns_others_away_and_leaves_no_file(tmp_path):
    lock = RunLock(tmp_path / "run")
    with held_by_another_thread(tmp_path / "run"):
        assert (tmp_path / "run" / ".lock").exists()
        assert not lock.acquire() and lock.is_held_elsewhere()
        assert lock.holder() == f"pid {os.getpid()} on {socket.gethostname()}"
    assert not (tmp_path / "run" / ".lock").exists() and not lock.is_held_elsewhere()
    assert lock.acquire()
    with pytest.raises(RuntimeError, match="already held by this object"):
        lock.acquire()
    lock.release()
    lock.release()  # a second release does nothing
    assert not (tmp_path / "run" / ".lock").exists()


@pytest.mark.parametrize("first", ["outer", "inner"])
def test_the_lock_is_reentrant_in_its_thread(tmp_path, first):
    """A sweep job holds its run's lock; the trainer it calls takes it again; the last release frees it."""
    job, trainer = RunLock(tmp_path / "run"), RunLock(tmp_path / "run")
    assert job.acquire() and trainer.acquire() and not trainer.is_held_elsewhere()
    (job if first == "outer" else trainer).release()
    other = RunLock(tmp_path / "run")
    assert other.is_held_elsewhere() is False  # this thread still holds it ...
    with pytest.raises(AssertionError, match="already held"):
        with held_by_another_thread(tmp_path / "run"):  # ... so another thread is turned away
            pass
    (trainer if first == "outer" else job).release()
    assert not (tmp_path / "run" / ".lock").exists()
    with held_by_another_thread(tmp_path / "run"):
        assert not other.acquire()


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    code = (
        "import sys, time; from lmix.experiments.io import RunLock; "
        f"lock = RunLock({str(run_dir)!r}); assert lock.acquire(); print('locked', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert (
            not RunLock(run_dir).acquire() and RunLock(run_dir).holder() == f"pid {proc.pid} on {socket.gethostname()}"
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (run_dir / ".lock").exists()  # a stale lock file with a dead pid ...
    lock = RunLock(run_dir)
    assert lock.acquire()  # ... is simply taken
    assert f"pid {os.getpid()}" in lock.holder()
    lock.release()
