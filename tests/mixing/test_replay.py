"""``batch.params`` replays a mix exactly: ``mixer(x, y, params=batch.params)``, for every registered
input-space mixer (generated from the registry) and for ``MixChoice`` per batch and per sample."""

from __future__ import annotations

import pytest
import torch

import lmix
from lmix.mixing import ChoiceParams, MixParams
from lmix.mixing.registry import mixer_class
from tests.mixing._util import config_id, mixer_configs

INPUT_CONFIGS = [c for c in mixer_configs() if not mixer_class(c[0]).uses_model]
CHOICES = [
    ("lmix+mixup", {}),
    ("lmix+mixup", {"schedule": "alternate"}),
    ("mixup+cutmix", {"mode": "sample"}),
    ("none+cutout+lmix+mixup", {"mode": "sample", "image_k": 0.5}),
]
ALL = INPUT_CONFIGS + CHOICES


def batch_of(seed: int, b: int = 9, size=(12, 10)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, *size, generator=g), torch.randint(0, 5, (b,), generator=g)


@pytest.mark.parametrize("config", ALL, ids=[config_id(c) for c in ALL])
def test_replay_is_exact_and_draws_nothing(config):
    name, params = config
    mixer = lmix.create_mixer(name, seed=3, **params)
    images, labels = batch_of(0)
    extra = torch.rand(9, 2, 12, 10)
    batch = mixer(images, labels, extras=[extra])
    assert batch.params is not None
    state = mixer.state_dict()
    again = mixer(images, labels, params=batch.params, extras=[extra])
    for a, b in ((batch.images, again.images), (batch.lam, again.lam), (batch.labels_b, again.labels_b)):
        assert torch.equal(a, b)
    assert torch.equal(batch.extras[0], again.extras[0])
    assert again.params is batch.params
    # Nothing random was drawn: the next call is the one an unreplayed mixer makes.
    twin = lmix.create_mixer(name, seed=3, **params)
    twin.load_state_dict(state)
    assert torch.equal(mixer(images, labels).images, twin(images, labels).images)


@pytest.mark.parametrize("config", ALL, ids=[config_id(c) for c in ALL])
def test_replay_on_another_tensor_mixes_it_the_same_way(config):
    """The partners, masks and weights of one batch applied to another: pixel (i, p) of the output
    comes from the same sources, so replaying on ``2 x`` gives ``2 x``'s mix (exact for 2 * float)."""
    name, params = config
    mixer = lmix.create_mixer(name, seed=5, **params)
    images, labels = batch_of(1)
    batch = mixer(images, labels)
    other = mixer(2 * images, labels, params=batch.params)
    if any(isinstance(m, lmix.LMix) and m.image_k > 0 for m in getattr(mixer, "mixers", [mixer])):
        torch.testing.assert_close(other.images, 2 * batch.images)  # the sharpening FFT rounds
    else:
        assert torch.equal(other.images, 2 * batch.images)
    assert torch.equal(other.lam, batch.lam) and torch.equal(other.labels_b, batch.labels_b)
    assert batch.params.perm.dtype == torch.int64


def test_params_perm_is_the_partner_index():
    mixer = lmix.CutMix(seed=0, pairing="flip")
    images, labels = batch_of(2)
    batch = mixer(images, labels)
    assert torch.equal(batch.params.perm, torch.arange(8, -1, -1))
    assert torch.equal(batch.labels_b, labels[batch.params.perm])


def test_choice_params_say_what_was_chosen():
    per_batch = lmix.create_mixer("lmix+mixup", seed=0, schedule="alternate")
    images, labels = batch_of(3)
    first, second = per_batch(images, labels), per_batch(images, labels)
    assert isinstance(first.params, ChoiceParams) and (first.params.index, second.params.index) == (0, 1)
    assert first.params.inner.mask is not None and second.params.inner.mask is None
    per_sample = lmix.create_mixer("mixup+cutmix", mode="sample", seed=0)
    params = per_sample(images, labels).params
    assert params.index is None and params.choice.shape == (9,)
    for c, (rows, cp) in enumerate(zip(params.rows, params.components, strict=True)):
        assert torch.equal(rows, (params.choice == c).nonzero().view(-1))
        assert cp is None or cp.lam.shape == rows.shape  # each component drew for its own samples only


def test_replay_refuses_params_that_do_not_fit():
    mixer = lmix.LMix(seed=0)
    images, labels = batch_of(4)
    params = mixer(images, labels).params
    with pytest.raises(ValueError, match="drawn for 9 samples, the images have 4"):
        mixer(images[:4], labels[:4], params=params)
    with pytest.raises(ValueError, match=r"drawn for images of \(12, 10\)"):
        mixer(torch.rand(9, 3, 8, 8), labels, params=params)
    with pytest.raises(TypeError, match="MixParams"):
        mixer(images, labels, params={"perm": params.perm})
    choice = lmix.create_mixer("lmix+mixup", mode="sample", seed=0)
    with pytest.raises(TypeError, match="ChoiceParams"):
        choice(images, labels, params=params)
    per_batch = lmix.create_mixer("lmix+mixup", seed=0)
    with pytest.raises(ValueError, match="drawn per sample; this MixChoice chooses per batch"):
        per_batch(images, labels, params=choice(images, labels).params)


def test_params_move_with_the_batch():
    mixer = lmix.create_mixer("cutout+lmix", mode="sample", seed=0)
    batch = mixer(*batch_of(5))
    moved = batch.to("cpu")
    assert isinstance(moved.params, ChoiceParams) and torch.equal(moved.params.perm, batch.params.perm)
    assert all(isinstance(c, MixParams) or c is None for c in moved.params.components)
