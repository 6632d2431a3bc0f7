"""summary.json's provenance: versions, the git commit (None outside a checkout) and the device."""

from __future__ import annotations

import subprocess

import torch

import lmix
from lmix.experiments.train import provenance as prov


def test_fields_on_cpu():
    rec = prov.provenance(torch.device("cpu"))
    assert set(rec) == {"lmix_version", "torch_version", "git_commit", "device_name"}
    assert rec["lmix_version"] == lmix.__version__
    assert rec["torch_version"] == str(torch.__version__) and type(rec["torch_version"]) is str
    assert isinstance(rec["device_name"], str) and rec["device_name"]


def test_git_commit_matches_the_checkout_or_is_none():
    prov.git_commit.cache_clear()
    commit = prov.git_commit()
    pkg = prov.Path(prov.__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=pkg, capture_output=True, text=True, timeout=5)
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "__init__.py"], cwd=pkg, capture_output=True)
        expected = head.stdout.strip() if head.returncode == 0 and tracked.returncode == 0 else None
    except OSError:
        expected = None
    assert commit == expected


def test_git_commit_is_none_on_any_failure(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    def hanging_git(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], 5)

    def not_a_repo(*args, **kwargs):
        return subprocess.CompletedProcess(args[0], 128, stdout="", stderr="fatal: not a git repository")

    for fake in (no_git, hanging_git, not_a_repo):
        prov.git_commit.cache_clear()
        monkeypatch.setattr(prov.subprocess, "run", fake)
        assert prov.git_commit() is None
    prov.git_commit.cache_clear()
