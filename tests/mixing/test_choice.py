"""MixChoice ("lmix+mixup"): schedules, and state_dict round trips of every mixer."""

from __future__ import annotations

import copy
import io

import pytest
import torch

import lmix
from tests.mixing._util import config_id, constant_images, mixer_configs


def classify(batch, images) -> str:
    """Which component produced ``batch`` from ``constant_images``: by what the pixels look like."""
    out, src = batch.images, images
    if torch.equal(out, src) and torch.equal(batch.labels_a, batch.labels_b):
        return "none"
    if bool((out == 0).any()):
        return "cutout"
    sources = set(src.unique().tolist())
    return "mask" if set(out.unique().tolist()) <= sources else "mixup"


@pytest.mark.parametrize("p", [(0.3, 0.7), (0.5, 0.5), (0.9, 0.1)])
def test_random_schedule_follows_p(p):
    images, labels, _ = constant_images(8, 1, 4, 4)
    choice = lmix.create_mixer("lmix+mixup", p=p, seed=1)
    n = 600
    picks = [classify(choice(images, labels), images) for _ in range(n)]
    assert set(picks) <= {"mask", "mixup"}
    count = picks.count("mask")
    sd = (n * p[0] * (1 - p[0])) ** 0.5
    assert abs(count - n * p[0]) < 5 * sd, (count, n * p[0])
    # Not a fixed pattern: both orders of consecutive picks occur.
    pairs = set(zip(picks, picks[1:]))
    assert {("mask", "mixup"), ("mixup", "mask")} <= pairs


def test_random_schedule_with_a_passed_generator():
    images, labels, _ = constant_images(8, 1, 4, 4)
    a = lmix.create_mixer("lmix+mixup", seed=1)
    b = lmix.create_mixer("lmix+mixup", seed=2)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for _ in range(20):
        x, y = a(images, labels, generator=g1), b(images, labels, generator=g2)
        assert torch.equal(x.images, y.images) and torch.equal(x.lam, y.lam)


def test_alternate_schedule_alternates():
    images, labels, _ = constant_images(8, 1, 4, 4)
    choice = lmix.create_mixer("lmix+mixup", schedule="alternate", seed=2)
    picks = [classify(choice(images, labels), images) for _ in range(10)]
    assert picks == ["mask", "mixup"] * 5
    three = lmix.create_mixer("none+mixup+cutout", schedule="alternate", seed=3)
    picks = [classify(three(images, labels), images) for _ in range(9)]
    assert picks == ["none", "mixup", "cutout"] * 3


def test_choice_passes_parameters_to_the_components_that_accept_them():
    choice = lmix.create_mixer("lmix+mixup", alpha=0.4, k=2.0, mode="batch", p=(0.25, 0.75), seed=0)
    lm, mu = choice.mixers
    assert isinstance(lm, lmix.LMix) and isinstance(mu, lmix.Mixup)
    assert lm.alpha == mu.alpha == 0.4 and lm.k == 2.0 and lm.mode == mu.mode == "batch"
    assert choice.p == [0.25, 0.75]


def outputs(mixer, n: int = 4):
    images = torch.rand(6, 3, 10, 12, generator=torch.Generator().manual_seed(9))
    labels = torch.arange(6)
    return [mixer(images, labels) for _ in range(n)]


def assert_same(xs, ys):
    for x, y in zip(xs, ys, strict=True):
        for field in ("images", "labels_a", "labels_b", "lam"):
            assert torch.equal(getattr(x, field), getattr(y, field)), field


CHOICES = [
    ("lmix+mixup", {}),
    ("lmix+mixup", {"schedule": "alternate"}),
    ("cutmix+fmix+mixup", {"p": (0.2, 0.3, 0.5)}),
    ("mixup+cutmix", {"mode": "sample"}),
]


@pytest.mark.parametrize("config", mixer_configs() + CHOICES, ids=config_id)
def test_state_dict_round_trip_reproduces_the_next_outputs(config):
    name, params = config
    mixer = lmix.create_mixer(name, **params, seed=11)
    outputs(mixer, 3)
    state = copy.deepcopy(mixer.state_dict())
    expected = outputs(mixer)
    # A fresh mixer with another seed, restored from the state.
    other = lmix.create_mixer(name, **params, seed=12)
    outputs(other, 1)
    other.load_state_dict(state)
    assert_same(outputs(other), expected)
    # Rewinding the same mixer; and through torch.save / torch.load(weights_only=True).
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    mixer.load_state_dict(torch.load(buf, weights_only=True))
    assert_same(outputs(mixer), expected)


def test_state_dict_before_first_call():
    mixer = lmix.create_mixer("lmix+mixup", seed=13)
    state = copy.deepcopy(mixer.state_dict())
    first = outputs(mixer)
    mixer.load_state_dict(state)
    assert_same(outputs(mixer), first)
