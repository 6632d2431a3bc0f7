"""Randomness of mixers copied into DataLoader workers and forked per DDP rank."""

from __future__ import annotations

import multiprocessing

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset, default_collate

import lmix

# Fork starts workers in a fraction of the time spawn takes and lets the collate function be a
# lambda, as a user would write it.
FORK = "fork" in multiprocessing.get_all_start_methods()


def lams_per_epoch(mixer: lmix.Mixer, loader_seed: int, *, epochs: int = 2, **loader_kw) -> list[list[torch.Tensor]]:
    """The (B,) lam of every batch, per epoch, from a 2-worker DataLoader with a collate mixer."""
    data = TensorDataset(torch.rand(16, 1, 4, 4), torch.arange(16))
    loader = DataLoader(
        data,
        batch_size=4,
        num_workers=2,
        collate_fn=lambda b: mixer(*default_collate(b)),
        generator=torch.Generator().manual_seed(loader_seed),
        multiprocessing_context="fork",
        **loader_kw,
    )
    return [[batch.lam for batch in loader] for _ in range(epochs)]


@pytest.mark.skipif(not FORK, reason="needs the fork start method")
@pytest.mark.parametrize("persistent", [False, True])
def test_workers_and_epochs_draw_different_streams_and_runs_repeat(persistent):
    run = lams_per_epoch(lmix.Mixup(seed=3), 5, persistent_workers=persistent)
    # Batches 0 and 1 come from workers 0 and 1: their first draws must differ.
    for epoch in run:
        assert not torch.equal(epoch[0], epoch[1])
        assert len({tuple(lam.tolist()) for lam in epoch}) == len(epoch)
    assert not torch.equal(torch.cat(run[0]), torch.cat(run[1]))
    again = lams_per_epoch(lmix.Mixup(seed=3), 5, persistent_workers=persistent)
    assert all(torch.equal(x, y) for e1, e2 in zip(run, again, strict=True) for x, y in zip(e1, e2, strict=True))
    # Another DataLoader generator gives another run; the main-process mixer was never advanced.
    other = lams_per_epoch(lmix.Mixup(seed=3), 6, epochs=1, persistent_workers=persistent)
    assert not torch.equal(torch.cat(other[0]), torch.cat(run[0]))


@pytest.mark.skipif(not FORK, reason="needs the fork start method")
def test_choice_in_workers_repeats():
    first = lams_per_epoch(lmix.create_mixer("lmix+mixup", seed=2), 1, epochs=1)
    second = lams_per_epoch(lmix.create_mixer("lmix+mixup", seed=2), 1, epochs=1)
    assert all(torch.equal(x, y) for x, y in zip(first[0], second[0], strict=True))
    assert not torch.equal(first[0][0], first[0][1])


def test_main_process_stream_is_unchanged_by_worker_support():
    mixer = lmix.Mixup(seed=4)
    images, labels = torch.rand(5, 1, 4, 4), torch.arange(5)
    expected = torch.Generator().manual_seed(4)
    # perm then lam from a generator seeded with the mixer's seed, as before.
    perm = torch.randperm(5, generator=expected)
    lam = torch.rand(5, generator=expected)
    out = mixer(images, labels)
    assert torch.equal(out.labels_b, labels[perm]) and torch.equal(out.lam, lam)
    assert list(mixer.state_dict()["generators"]) == ["cpu"]


@pytest.mark.parametrize("name", ["lmix", "mixup", "cutmix", "lmix+mixup"])
def test_fork_gives_independent_reproducible_streams(name):
    images, labels = torch.rand(6, 2, 8, 8), torch.arange(6)
    base = lmix.create_mixer(name, seed=7)
    base(images, labels)  # a used mixer forks into fresh generators
    forks = [base.fork(rank) for rank in range(3)]
    outs = [f(images, labels) for f in forks]
    assert len({tuple(o.lam.tolist()) for o in outs}) == 3
    again = lmix.create_mixer(name, seed=7).fork(1)(images, labels)
    assert torch.equal(again.images, outs[1].images) and torch.equal(again.lam, outs[1].lam)
    assert type(forks[0]) is type(base) and repr(forks[0]) == repr(base)
    if isinstance(base, lmix.MixChoice):
        seeds = {m.seed for f in forks for m in f._tree()}
        assert len(seeds) == 3 * 3  # choice + 2 components, per fork


def test_fork_rejects_bad_index():
    with pytest.raises(ValueError, match="non-negative integer"):
        lmix.Mixup(seed=0).fork(-1)
    with pytest.raises(ValueError, match="non-negative integer"):
        lmix.Mixup(seed=0).fork(1.5)


def test_worker_generator_state_round_trips():
    """A state_dict taken in a worker (keys carry the worker seed) loads back anywhere."""

    class Info:
        seed, id = 123, 0

    mixer = lmix.LMix(seed=1)
    images, labels = torch.rand(4, 1, 8, 8), torch.arange(4)
    from unittest import mock

    with mock.patch("torch.utils.data.get_worker_info", return_value=Info()):
        mixer(images, labels)
        state = mixer.state_dict()
        expected = mixer(images, labels)
        other = lmix.LMix(seed=9)
        other.load_state_dict(state)
        assert torch.equal(other(images, labels).images, expected.images)
    assert any("worker-seed=123" in k for k in state["generators"])
