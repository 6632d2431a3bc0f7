"""``available_cpus``: the process's affinity mask, else the machine's CPU count."""

from __future__ import annotations

import os

import lmix.data as D
from lmix.data import cpus


def test_the_affinity_mask_counts(monkeypatch):
    assert D.available_cpus() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3})
    assert cpus.available_cpus() == 2


def test_without_an_affinity_mask_the_machine_counts(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert cpus.available_cpus() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown
    assert cpus.available_cpus() == 1
