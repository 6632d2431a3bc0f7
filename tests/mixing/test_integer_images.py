"""uint8 images (a collate's batches) mix without a float round trip for masks, blended rows are
rounded, and the CPU's chunked paths (blending, Fourier masks) give the unchunked bits."""

from __future__ import annotations

import pytest
import torch

import lmix
from lmix.mixing import base, masks
from lmix.mixing.registry import mixer_class
from tests.mixing._util import config_id, mixer_configs

INPUT_CONFIGS = [c for c in mixer_configs() if not mixer_class(c[0]).uses_model]
CHOICES = [("mixup+lmix", {"mode": "sample"}), ("none+cutout+cutmix+mixup", {"mode": "sample", "alpha": 0.7})]


def uint8_batch(seed: int, b: int = 11, size=(9, 13)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, *size), generator=g, dtype=torch.uint8), torch.arange(b) % 4


@pytest.mark.parametrize("config", INPUT_CONFIGS + CHOICES, ids=[config_id(c) for c in INPUT_CONFIGS + CHOICES])
def test_uint8_apply_is_the_float_mix_rounded(config):
    name, params = config
    mixer = lmix.create_mixer(name, seed=1, **{"image_k": 0.5, **params} if name == "lmix" else params)
    images, labels = uint8_batch(0)
    p = mixer.draw(images)
    out = mixer.apply(images, labels, p)
    ref = mixer.apply(images.float(), labels, p)
    assert out.images.dtype == torch.uint8
    assert torch.equal(out.images, ref.images.round().clamp(0, 255).to(torch.uint8))
    assert torch.equal(out.lam, ref.lam) and torch.equal(out.labels_b, ref.labels_b)


def test_chunked_blending_gives_the_same_bits(monkeypatch):
    images, labels = uint8_batch(1, b=16, size=(20, 20))
    for name, params in (("mixup", {}), ("mixup+cutmix", {"mode": "sample"})):
        mixer = lmix.create_mixer(name, seed=2, **params)
        p = mixer.draw(images)
        whole = mixer.apply(images, labels, p)
        monkeypatch.setattr(base, "BLEND_CHUNK", 1)  # one row per chunk
        rows = mixer.apply(images, labels, p)
        monkeypatch.undo()
        assert torch.equal(whole.images, rows.images) and torch.equal(whole.lam, rows.lam)
        floats = mixer.apply(images.float(), labels, p)
        monkeypatch.setattr(base, "BLEND_CHUNK", 1)
        assert torch.equal(mixer.apply(images.float(), labels, p).images, floats.images)
        monkeypatch.undo()


@pytest.mark.parametrize("size", [(28, 28), (32, 32), (17, 40)])
@pytest.mark.parametrize("chunk", [1, 700, 5000])
def test_fourier_masks_in_groups_are_the_masks_of_one_call(monkeypatch, size, chunk):
    lam = torch.rand(13, generator=torch.Generator().manual_seed(3))
    grey = masks.fourier_noise(13, size, decay=3.0, k=1.0, generator=torch.Generator().manual_seed(4))
    ref_mask, ref_area = masks.top_mask(grey, lam)
    monkeypatch.setattr(masks, "MASK_CHUNK", chunk)  # groups of chunk // (H W) masks, at least one
    mask, area = masks.fourier_top_masks(lam, size, decay=3.0, k=1.0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(mask, ref_mask) and torch.equal(area, ref_area)


def test_uint8_sharpening_rounds():
    images = torch.full((1, 1, 8, 8), 100, dtype=torch.uint8)
    images[0, 0, 4, 4] = 200
    sharp = masks.sharpen(images, decay=3.0, k=2.0)
    ref = masks.sharpen(images.float(), decay=3.0, k=2.0).round().clamp(0, 255).to(torch.uint8)
    assert sharp.dtype == torch.uint8 and torch.equal(sharp, ref)
