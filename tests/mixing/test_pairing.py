"""The ``pairing`` option of the input-space mixers: random, no_self, flip, roll."""

from __future__ import annotations

import pytest
import torch

import lmix
from lmix.mixing.sampling import sample_pairing, sample_permutation
from tests.mixing._util import accepts

PAIRED = [name for name in lmix.list_mixers() if accepts(name, "pairing")]
CPU = torch.device("cpu")


def test_every_mask_and_blend_mixer_takes_pairing():
    assert {"lmix", "fmix", "mixup", "cutmix"} <= set(PAIRED)


@pytest.mark.parametrize("name", PAIRED)
def test_random_pairing_is_todays_permutation(name):
    images, labels = torch.rand(7, 2, 8, 8), torch.arange(7)
    default = lmix.create_mixer(name, seed=3)(images, labels)
    explicit = lmix.create_mixer(name, seed=3, pairing="random")(images, labels)
    assert torch.equal(default.images, explicit.images) and torch.equal(default.labels_b, explicit.labels_b)
    assert torch.equal(default.labels_b, sample_permutation(7, generator=torch.Generator().manual_seed(3), device=CPU))


@pytest.mark.parametrize("name", PAIRED)
@pytest.mark.parametrize("b", [1, 2, 5, 16])
def test_fixed_pairings(name, b):
    images, labels = torch.rand(b, 1, 6, 6), torch.arange(b) + 10
    flip = lmix.create_mixer(name, seed=0, pairing="flip")(images, labels)
    assert torch.equal(flip.labels_b, labels.flip(0))
    roll = lmix.create_mixer(name, seed=0, pairing="roll")(images, labels)
    assert torch.equal(roll.labels_b, labels.roll(1, 0))


@pytest.mark.parametrize("name", PAIRED)
def test_no_self_never_pairs_a_sample_with_itself(name):
    mixer = lmix.create_mixer(name, seed=1, pairing="no_self")
    for b in (2, 3, 8):
        images, labels = torch.rand(b, 1, 6, 6), torch.arange(b)
        for _ in range(20):
            partners = mixer(images, labels).labels_b
            assert sorted(partners.tolist()) == list(range(b))
            assert not bool((partners == labels).any())
    assert torch.equal(mixer(torch.rand(1, 1, 6, 6), torch.arange(1)).labels_b, torch.tensor([0]))


def test_no_self_is_a_uniform_random_cycle():
    """Every one of the (B-1)! cycles of B = 4 elements is drawn about equally often."""
    gen = torch.Generator().manual_seed(0)
    counts: dict[tuple[int, ...], int] = {}
    n = 3000
    for _ in range(n):
        perm = tuple(sample_pairing("no_self", 4, generator=gen, device=CPU).tolist())
        counts[perm] = counts.get(perm, 0) + 1
    assert len(counts) == 6  # (4 - 1)! single cycles
    for perm, count in counts.items():
        seen, i = set(), 0
        for _ in range(4):
            seen.add(i)
            i = perm[i]
        assert seen == {0, 1, 2, 3}, perm  # one cycle through all four
        assert abs(count - n / 6) < 5 * (n * (1 / 6) * (5 / 6)) ** 0.5


def test_pairing_goes_to_every_component_of_a_choice():
    choice = lmix.create_mixer("lmix+mixup", pairing="flip", seed=0)
    assert [m.pairing for m in choice.mixers] == ["flip", "flip"]


@pytest.mark.parametrize("bad", ["none", "Random", 1, None])
def test_bad_pairing_is_rejected(bad):
    with pytest.raises(ValueError, match="pairing must be 'random'.*'no_self'.*'flip'.*'roll'"):
        lmix.Mixup(pairing=bad)
    with pytest.raises(ValueError, match="pairing must be one of"):
        sample_pairing(bad, 3, generator=torch.Generator(), device=CPU)


def test_cutout_takes_no_pairing():
    with pytest.raises(ValueError, match="unknown parameter"):
        lmix.create_mixer("cutout", pairing="flip")
