"""lmix.augment: crop, flip and normalise against straightforward per-sample references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmix.augment import (
    crop_at,
    crop_flip_at,
    flip_where,
    normalize,
    random_crop,
    random_hflip,
    sample_crop_offsets,
    sample_flips,
)


def _images(b=6, c=3, h=7, w=9, dtype=torch.uint8, device="cpu"):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(1, 256, (b, c, h, w), generator=gen).to(
        device=device, dtype=dtype
    )  # no zeros: padding is visible


def _reference_crop(x, offsets, p):
    padded = F.pad(x, (p, p, p, p))
    h, w = x.shape[-2:]
    return torch.stack([padded[i, :, r : r + h, c : c + w] for i, (r, c) in enumerate(offsets.tolist())])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.bfloat16])
def test_crop_matches_per_sample_reference(device, dtype):
    x = _images(dtype=dtype, device=device)
    gen = torch.Generator(device=device).manual_seed(1)
    offsets = sample_crop_offsets(x.shape[0], 3, generator=gen)
    assert offsets.device.type == torch.device(device).type and int(offsets.min()) >= 0 and int(offsets.max()) <= 6
    out = crop_at(x, offsets, 3)
    assert out.dtype == dtype and out.shape == x.shape
    assert torch.equal(out, _reference_crop(x, offsets, 3))


def test_crop_offsets_are_shifts_with_zero_fill():
    x = _images(b=2)
    p = 2
    centre = crop_at(x, torch.tensor([[p, p], [p, p]]), p)
    assert torch.equal(centre, x)
    shifted = crop_at(x, torch.tensor([[0, 0], [2 * p, 2 * p]]), p)
    # Offset (0, 0) moves the content down/right by p; (2p, 2p) moves it up/left.
    assert torch.equal(shifted[0, :, p:, p:], x[0, :, :-p, :-p])
    assert bool((shifted[0, :, :p] == 0).all()) and bool((shifted[0, :, :, :p] == 0).all())
    assert torch.equal(shifted[1, :, :-p, :-p], x[1, :, p:, p:])
    assert bool((shifted[1, :, -p:] == 0).all())


def test_flip_where_mirrors_only_selected():
    x = _images(b=4)
    mask = torch.tensor([True, False, True, False])
    out = flip_where(x, mask)
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[2], x[2].flip(-1))
    assert torch.equal(out[1], x[1]) and torch.equal(out[3], x[3])
    assert torch.equal(out[0, :, :, 0], x[0, :, :, -1])


def test_fused_crop_flip_equals_crop_then_flip(device):
    x = _images(b=32, device=device)
    gen = torch.Generator(device=device).manual_seed(2)
    offsets, flips = sample_crop_offsets(32, 4, generator=gen), sample_flips(32, generator=gen)
    assert torch.equal(
        crop_flip_at(x, offsets=offsets, flips=flips, padding=4), flip_where(crop_at(x, offsets, 4), flips)
    )
    assert torch.equal(crop_flip_at(x, offsets=None, flips=flips, padding=4), flip_where(x, flips))
    assert torch.equal(crop_flip_at(x, offsets=None, flips=None, padding=4), x)


def test_random_ops_use_only_the_explicit_generator(device):
    x = _images(b=64, device=device)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = random_hflip(
        random_crop(x, 4, generator=torch.Generator(device=device).manual_seed(5)),
        generator=torch.Generator(device=device).manual_seed(6),
    )
    b = random_hflip(
        random_crop(x, 4, generator=torch.Generator(device=device).manual_seed(5)),
        generator=torch.Generator(device=device).manual_seed(6),
    )
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)
    c = random_crop(x, 4, generator=torch.Generator(device=device).manual_seed(7))
    assert not torch.equal(random_crop(x, 4, generator=torch.Generator(device=device).manual_seed(5)), c)


def test_flip_probability_and_offset_coverage():
    gen = torch.Generator().manual_seed(0)
    flips = sample_flips(20000, generator=gen)
    assert 0.48 < flips.float().mean().item() < 0.52
    assert not bool(sample_flips(100, generator=gen, p=0.0).any()) and bool(
        sample_flips(100, generator=gen, p=1.0).all()
    )
    offsets = sample_crop_offsets(20000, 4, generator=gen)
    assert set(offsets.flatten().tolist()) == set(range(9))


def test_normalize_matches_formula_and_torchvision():
    from torchvision.transforms import v2

    x = _images(b=3)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    out = normalize(x, mean, std)
    assert out.dtype == torch.float32
    ref = (x.double() / 255 - torch.tensor(mean, dtype=torch.double).view(3, 1, 1)) / torch.tensor(
        std, dtype=torch.double
    ).view(3, 1, 1)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=0)
    tv = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])
    assert torch.equal(out, torch.stack([tv(v2.functional.to_image(img)) for img in x]))  # bit-identical
    assert torch.equal(
        normalize(x.float() / 255, mean, std),
        (x.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1),
    )


def test_validation_messages():
    x = _images()
    gen = torch.Generator()
    with pytest.raises(ValueError, match="padding must be an integer >= 0"):
        random_crop(x, -1, generator=gen)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        random_crop(x, 2, generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shape \(B, C, H, W\) images or \(B, C, L\) sequences"):
        random_hflip(x[0, 0], generator=gen)
    with pytest.raises(ValueError, match="p must be a number in"):
        random_hflip(x, generator=gen, p=1.5)
    with pytest.raises(ValueError, match="offsets must have shape"):
        crop_at(x, torch.zeros(2, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="one entry per channel"):
        normalize(x, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="std must be finite and > 0"):
        normalize(x, (0.5,) * 3, (0.5, 0.0, 0.5))
    with pytest.raises(TypeError, match="uint8 or floating point"):
        normalize(x.long(), (0.5,) * 3, (0.5,) * 3)


# Sequences (B, C, L): the crop is a shift along L with zero fill, the flip is time reversal.
def _sequences(b=6, c=2, length=11, dtype=torch.float32, device="cpu"):
    gen = torch.Generator().manual_seed(3)
    return torch.randint(1, 256, (b, c, length), generator=gen).to(device=device, dtype=dtype)


@pytest.mark.parametrize("padding", [1, 3, 11, 20])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.bfloat16])
def test_sequence_crop_and_flip_match_per_sample_reference(device, dtype, padding):
    x = _sequences(dtype=dtype, device=device)
    gen = torch.Generator(device=device).manual_seed(4)
    offsets = sample_crop_offsets(x.shape[0], padding, generator=gen, spatial_dims=1)
    flips = sample_flips(x.shape[0], generator=gen)
    assert offsets.shape == (6, 1) and int(offsets.min()) >= 0 and int(offsets.max()) <= 2 * padding
    padded = F.pad(x, (padding, padding))
    length = x.shape[-1]
    crops = [padded[i, :, o : o + length] for i, o in enumerate(offsets[:, 0].tolist())]
    reference = torch.stack([s.flip(-1) if f else s for s, f in zip(crops, flips.tolist())])
    out = crop_flip_at(x, offsets=offsets, flips=flips, padding=padding)
    assert out.dtype == dtype and out.shape == x.shape and torch.equal(out, reference)
    assert torch.equal(crop_at(x, offsets, padding), torch.stack(crops))
    assert torch.equal(flip_where(x, flips), torch.stack([s.flip(-1) if f else s for s, f in zip(x, flips.tolist())]))


def test_sequence_shift_moves_content_and_fills_zeros():
    x = _sequences(b=2)
    p = 3
    assert torch.equal(crop_at(x, torch.tensor([[p], [p]]), p), x)  # centre offset: unchanged
    shifted = crop_at(x, torch.tensor([[0], [2 * p]]), p)
    # Offset 0 delays the sequence by p steps; 2p advances it.
    assert torch.equal(shifted[0, :, p:], x[0, :, :-p]) and bool((shifted[0, :, :p] == 0).all())
    assert torch.equal(shifted[1, :, :-p], x[1, :, p:]) and bool((shifted[1, :, -p:] == 0).all())


def test_random_ops_on_sequences_are_seeded_and_shape_preserving():
    x = _sequences(b=64)
    a = random_hflip(random_crop(x, 4, generator=torch.Generator().manual_seed(5)), generator=torch.Generator())
    b = random_hflip(random_crop(x, 4, generator=torch.Generator().manual_seed(5)), generator=torch.Generator())
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)


def test_image_offsets_are_unchanged_by_the_sequence_option():
    # Adding spatial_dims kept the draws of images bit-identical (recorded runs replay their crops).
    a = sample_crop_offsets(50, 4, generator=torch.Generator().manual_seed(9))
    b = torch.randint(0, 9, (50, 2), generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_normalize_sequences_per_channel():
    x = _sequences(b=4, c=3)
    mean, std = (1.0, -2.0, 50.0), (2.0, 0.5, 10.0)
    out = normalize(x, mean, std, spatial_dims=1)
    ref = (x - torch.tensor(mean).view(3, 1)) / torch.tensor(std).view(3, 1)
    assert out.dtype == torch.float32 and torch.equal(out, ref)
    assert torch.equal(normalize(x[0], mean, std, spatial_dims=1), ref[0])  # unbatched (C, L)
    with pytest.raises(ValueError, match=r"\(B, C, L\) or \(C, L\)"):
        normalize(x[0, 0], mean[:1], std[:1], spatial_dims=1)
    with pytest.raises(ValueError, match="spatial_dims must be 1"):
        normalize(x, mean, std, spatial_dims=3)


def test_sequence_validation_messages():
    x = _sequences()
    with pytest.raises(ValueError, match=r"offsets must have shape \(B, 1\)"):
        crop_at(x, torch.zeros(6, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"offsets must have shape \(B, 2\)"):
        crop_at(_images(), torch.zeros(6, 1, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) images or \(B, C, L\) sequences"):
        random_crop(x[0], 2, generator=torch.Generator())
    with pytest.raises(ValueError, match="spatial_dims must be 1"):
        sample_crop_offsets(3, 2, generator=torch.Generator(), spatial_dims=0)
