"""Atomic writes: a failed write leaves the previous file intact; files get a normal mode."""

from __future__ import annotations

import os

import pytest

from lmix.experiments.io import atomic_write, atomic_write_json


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
