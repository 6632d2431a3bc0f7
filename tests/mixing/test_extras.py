"""Extra tensors (segmentation maps, dense targets) mixed with the images' partners and masks."""

from __future__ import annotations

import pytest
import torch

import lmix
from tests.mixing._util import config_id, constant_images, mixer_configs

INPUT_SPACE = [c for c in mixer_configs() if not lmix.create_mixer(c[0], seed=0).uses_model] + [
    ("lmix+mixup", {}),
    ("mixup+cutmix", {"mode": "sample"}),
    ("none+cutout+lmix", {"mode": "sample"}),
    ("cutmix+fmix", {"mode": "sample"}),
]
CPU = torch.device("cpu")


def blends(mixer: lmix.Mixer) -> bool:
    parts = mixer.mixers if isinstance(mixer, lmix.MixChoice) else [mixer]
    return any(isinstance(m, lmix.Mixup) for m in parts)


@pytest.mark.parametrize("config", INPUT_SPACE, ids=config_id)
def test_a_copy_of_the_images_is_mixed_exactly_like_them(config):
    name, params = config
    mixer = lmix.create_mixer(name, **params, seed=1)
    images = torch.rand(8, 3, 10, 12)
    for _ in range(3):  # a MixChoice per batch: several batches visit several components
        out = mixer(images, torch.arange(8), extras=[images.clone(), images[:, 0].clone()])
        assert len(out.extras) == 2
        assert torch.equal(out.extras[0], out.images)
        assert torch.equal(out.extras[1], out.images[:, 0])


@pytest.mark.parametrize("config", INPUT_SPACE, ids=config_id)
def test_integer_maps_follow_the_mask(config):
    name, params = config
    mixer = lmix.create_mixer(name, **params, seed=2)
    images, labels, values = constant_images(8, 1, 10, 10)
    seg = labels[:, None, None].expand(8, 10, 10).contiguous()  # each pixel: its sample's index
    if blends(mixer) and not isinstance(mixer, lmix.MixChoice):
        with pytest.raises(ValueError, match="cannot mix an integer extra"):
            mixer(images, labels, extras=[seg])
        return
    for _ in range(3):
        try:
            out = mixer(images, labels, extras=[seg, seg[:, None]])
        except ValueError as err:  # a per-batch choice that drew Mixup
            assert "cannot mix an integer extra" in str(err)
            continue
        mixed = out.extras[0]
        assert mixed.dtype == torch.int64 and mixed.shape == seg.shape
        assert torch.equal(out.extras[1], mixed[:, None])
        own = out.images[:, 0] == values[:, 0, None, None].float()
        zero = out.images[:, 0] == 0  # Cutout: the label map keeps its values there
        expected = torch.where(own | zero, labels[:, None, None], out.labels_b[:, None, None])
        assert torch.equal(mixed, expected)


def test_float_and_5d_extras_and_apply_extra():
    mixer = lmix.LMix(seed=0)
    images = torch.rand(4, 3, 8, 8)
    video = torch.rand(4, 2, 5, 8, 8)
    params = mixer.sample(4, (8, 8), device=CPU, generator=torch.Generator().manual_seed(0))
    mixed = mixer.apply_extra(video, params)
    keep = params.mask[:, :, None]  # (B, 1, 1, H, W)
    assert torch.equal(mixed, torch.where(keep, video, video[params.perm]))
    out = mixer.apply(images, torch.arange(4), params)
    assert torch.equal(mixer.apply_extra(images, params), out.images)


def test_mixup_blends_float_extras_with_its_weight():
    mixer = lmix.Mixup(seed=0)
    images = torch.rand(5, 3, 4, 4, dtype=torch.float64)
    soft = torch.rand(5, 7, 4, 4, dtype=torch.float64)
    out = mixer(images, torch.arange(5), extras=[soft])
    lam = out.lam.double()[:, None, None, None]
    perm = out.labels_b
    assert torch.allclose(out.extras[0], lam * soft + (1 - lam) * soft[perm])


def test_cutout_leaves_integer_extras_and_zeroes_float_ones():
    mixer = lmix.Cutout(size=4, seed=0)
    images = torch.rand(3, 1, 8, 8) + 1
    seg = torch.randint(0, 5, (3, 8, 8))
    out = mixer(images, torch.arange(3), extras=[seg, images[:, 0]])
    assert out.extras[0] is seg
    assert torch.equal(out.extras[1], out.images[:, 0])


def test_no_extras_gives_an_empty_tuple_and_to_moves_them():
    out = lmix.Mixup(seed=0)(torch.rand(2, 1, 4, 4), torch.arange(2))
    assert out.extras == ()
    out = lmix.CutMix(seed=0)(torch.rand(2, 1, 4, 4), torch.arange(2), extras=[torch.zeros(2, 4, 4)])
    moved = out.to("cpu")
    assert len(moved.extras) == 1 and torch.equal(moved.extras[0], out.extras[0])


def test_bad_extras_are_rejected():
    mixer = lmix.CutMix(seed=0)
    images, labels = torch.rand(2, 1, 4, 4), torch.arange(2)
    with pytest.raises(TypeError, match="extras must be a sequence of tensors"):
        mixer(images, labels, extras=torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match=r"extras\[0\] must have shape \(B, \.\.\., H, W\) = \(2, \.\.\., 4, 4\)"):
        mixer(images, labels, extras=[torch.zeros(2, 4, 5)])
    with pytest.raises(ValueError, match=r"extras\[1\] must have shape"):
        mixer(images, labels, extras=[torch.zeros(2, 4, 4), torch.zeros(3, 4, 4)])
    with pytest.raises(ValueError, match=r"extras\[0\] must have shape"):
        mixer(images, labels, extras=[torch.zeros(2, 4)])
    with pytest.raises(TypeError, match=r"extras\[0\] must be a torch.Tensor"):
        mixer(images, labels, extras=[[0, 1]])
    with pytest.raises(ValueError, match=r"extras\[0\] must be on the images' device"):
        mixer(images, labels, extras=[torch.zeros(2, 4, 4, device="meta")])
