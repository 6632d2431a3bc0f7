"""Mixers on sequences (B, C, L) and volumes (B, C, D, H, W): what each kind does to every pixel,
lam, replay, per-batch mode, extras, uint8, MixChoice, sharpening, and CutMix/Cutout's N-D boxes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import lmix
from lmix.mixing.masks import sharpen
from lmix.mixing.registry import mixer_class
from lmix.mixing.sampling import sample_beta, sample_pairing
from tests.mixing._util import config_id, kind_of, mixer_configs
from tests.mixing.test_choice_sample import component_outputs

RANKS = {1: (23,), 3: (5, 6, 7)}
INPUT = [c for c in mixer_configs() if not mixer_class(c[0]).uses_model]
CHOICES = [("lmix+mixup", {}), ("mixup+cutmix", {"mode": "sample"}), ("none+cutout+lmix+mixup", {"mode": "sample"})]
CPU = torch.device("cpu")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def constant(
    b: int, c: int, size: tuple[int, ...], dtype=torch.float32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, C, *size) images constant per (sample, channel), labels arange(B), values (B, C) float64."""
    values = torch.arange(1, b + 1, dtype=torch.float64)[:, None] + torch.arange(c, dtype=torch.float64)[None, :] / 4
    images = values.view(b, c, *(1,) * len(size)).expand(b, c, *size).to(dtype).contiguous()
    return images, torch.arange(b), values


def spread(values: torch.Tensor, d: int) -> torch.Tensor:
    return values.view(*values.shape, *(1,) * d)


@pytest.mark.parametrize("rank", sorted(RANKS), ids=lambda d: f"{d}-D")
@pytest.mark.parametrize("config", INPUT, ids=config_id)
def test_every_mixer_mixes_sequences_and_volumes(config, rank):
    """Each pixel is the sample's or its partner's (mask), their blend with lam (Mixup), the sample's
    or 0 (Cutout), or the sample's (none); lam is the exact share of the sample's pixels."""
    name, params = config
    size = RANKS[rank]
    mixer = lmix.create_mixer(name, **params, seed=5)
    images, labels, values = constant(12, 2, size)
    batch = mixer(images, labels)
    assert batch.images.shape == images.shape and batch.lam.shape == (12,)
    out = batch.images.double()
    own = spread(values, rank)
    partner = spread(values[batch.labels_b], rank)
    kind = kind_of(mixer, size)
    dims = tuple(range(2, 2 + rank))
    if kind == "erase":
        assert bool(((out == own) | (out == 0)).all()) and bool((batch.lam == 1).all())
        assert torch.equal(batch.labels_b, labels)
        return
    if kind == "identity":
        assert torch.equal(batch.images, images)
        return
    lam = batch.lam.double()
    if kind == "blend":
        expected = lam.view(-1, 1, *(1,) * rank) * own + (1 - lam.view(-1, 1, *(1,) * rank)) * partner
        assert torch.allclose(out, expected.expand_as(out), atol=1e-5)
        return
    kept = out == own
    assert bool((kept | (out == partner)).all())
    assert bool((kept == kept[:, :1]).all())  # one mask for every channel
    mixed = batch.labels_b != labels
    assert torch.equal(kept[mixed, 0].float().mean(dim=tuple(d - 1 for d in dims)), batch.lam[mixed])
    if params.get("mode") == "batch":
        assert bool((batch.params.mask == batch.params.mask[:1]).all())
    elif name in ("lmix", "fmix"):
        assert len({tuple(m.flatten().tolist()) for m in batch.params.mask}) == 12


@pytest.mark.parametrize("rank", sorted(RANKS), ids=lambda d: f"{d}-D")
@pytest.mark.parametrize("config", INPUT + CHOICES, ids=config_id)
def test_replay_extras_and_uint8_in_nd(config, rank):
    """Replay is exact; a copy of the images passed as an extra is mixed exactly like them, and so is a
    (B, *size) map; uint8 images mix as the float mix rounded."""
    name, params = config
    size = RANKS[rank]
    mixer = lmix.create_mixer(name, **params, seed=6)
    images = torch.rand(9, 2, *size, generator=gen(1))
    labels = torch.arange(9)
    for _ in range(2):  # a per-batch choice visits its components
        batch = mixer(images, labels, extras=[images.clone(), images[:, 1].clone()])
        assert torch.equal(batch.extras[0], batch.images) and torch.equal(batch.extras[1], batch.images[:, 1])
        again = mixer(images, labels, params=batch.params)
        assert torch.equal(again.images, batch.images) and torch.equal(again.lam, batch.lam)
    u8 = (images * 255).round().to(torch.uint8)
    params_ = mixer.draw(u8)
    out = mixer.apply(u8, labels, params_)
    ref = mixer.apply(u8.float(), labels, params_)
    assert out.images.dtype == torch.uint8
    assert torch.equal(out.images, ref.images.round().clamp(0, 255).to(torch.uint8))


@pytest.mark.parametrize("rank", sorted(RANKS), ids=lambda d: f"{d}-D")
@pytest.mark.parametrize("name", ["lmix", "fmix", "cutmix", "cutout", "none"])
def test_integer_maps_follow_the_mask_in_nd(name, rank):
    size = RANKS[rank]
    mixer = lmix.create_mixer(name, seed=7)
    images, labels, values = constant(8, 1, size)
    seg = labels.view(8, *(1,) * rank).expand(8, *size).contiguous()
    out = mixer(images, labels, extras=[seg, seg[:, None]])
    own = out.images[:, 0].double() == spread(values[:, 0], rank)
    zero = out.images[:, 0] == 0  # Cutout: the map keeps its values there
    expected = torch.where(own | zero, spread(labels, rank), spread(out.labels_b, rank))
    assert torch.equal(out.extras[0], expected) and torch.equal(out.extras[1], expected[:, None])


@pytest.mark.parametrize("rank", sorted(RANKS), ids=lambda d: f"{d}-D")
def test_per_sample_choice_in_nd_is_each_components_own_mix(rank):
    size = RANKS[rank]
    choice = lmix.create_mixer("none+cutout+lmix+mixup", mode="sample", image_k=0.5, seed=8)
    images = torch.rand(16, 2, *size, generator=gen(2))
    labels = torch.arange(16) % 5
    batch = choice(images, labels)
    expected = component_outputs(choice, images, labels, batch.params)
    assert sorted(expected) == list(range(16))
    for i, (image, label_b, lam) in expected.items():
        torch.testing.assert_close(batch.images[i], image)
        assert batch.labels_b[i] == label_b and batch.lam[i] == lam


@pytest.mark.parametrize("rank", sorted(RANKS), ids=lambda d: f"{d}-D")
def test_sharpen_and_image_k_in_nd(rank):
    """sharpen filters the spatial axes of (B, C, *spatial): the mean stays, high frequencies grow
    by about (1 + k)^2 in power; LMix's image_k sharpens its mixed batch so."""
    size = (64,) if rank == 1 else (8, 8, 8)
    x = torch.rand(6, 2, *size, generator=gen(3), dtype=torch.float64)
    y = sharpen(x, decay=3.0, k=1.0)
    dims = tuple(range(2, 2 + rank))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.allclose(y.mean(dim=dims), x.mean(dim=dims), atol=1e-6)
    corner = (slice(None), slice(None), *(s // 2 for s in size))
    gain = torch.fft.rfftn(y, dim=dims)[corner].abs() / torch.fft.rfftn(x, dim=dims)[corner].abs()
    assert bool((gain > 1.8).all())  # 1 + k (1 - H_lp) at the highest frequency, H_lp small there
    images, labels = x.float(), torch.arange(6)
    plain = lmix.create_mixer("lmix", seed=9)(images, labels)
    sharp = lmix.create_mixer("lmix", image_k=1.0, seed=9)(images, labels)
    assert torch.equal(plain.lam, sharp.lam)
    torch.testing.assert_close(sharp.images, sharpen(plain.images, decay=3.0, k=1.0))


@pytest.mark.parametrize("size", [(40,), (9, 12, 16), (10, 10, 10)], ids=lambda s: "x".join(map(str, s)))
def test_cutmix_box_in_nd_has_volume_one_minus_lam(size):
    """Sides int(n_i * (1 - lam0) ** (1 / d)) for the lam0 drawn after the partners, a uniform centre
    per axis, the box clipped at the border: a segment (1-D) or a cuboid (3-D)."""
    d, b = len(size), 200
    params = lmix.create_mixer("cutmix", seed=0).sample(b, size, device=CPU, generator=gen(4))
    ref = gen(4)
    sample_pairing("random", b, generator=ref, device=CPU)
    lam0 = sample_beta(1.0, b, generator=ref, device=CPU).double()
    ratio = (1 - lam0) ** (1 / d)
    centres = [torch.randint(0, n, (b,), generator=ref) for n in size]
    expected = torch.zeros(b, *size, dtype=torch.bool)
    unclipped = torch.ones(b, dtype=torch.bool)
    for i in range(b):
        box = []
        for n, c in zip(size, centres, strict=True):
            side = int(n * float(ratio[i]))
            start = int(c[i]) - side // 2
            box.append(slice(min(max(start, 0), n), min(max(start + side, 0), n)))
            unclipped[i] &= 0 <= start and start + side <= n
        expected[(i, *box)] = True
    assert torch.equal(params.mask[:, 0], ~expected)
    assert torch.equal(params.lam, (~expected).flatten(1).float().mean(1))
    # Unclipped boxes hold the share 1 - lam0 of the pixels, less the rounding down of each side.
    volume = expected.flatten(1).sum(1).double()
    upper = (1 - lam0) * math.prod(size)
    lower = torch.stack([(n * ratio - 1).clamp_min(0) for n in size]).prod(0)
    assert int(unclipped.sum()) > 5
    assert bool((volume[unclipped] <= upper[unclipped] + 1e-9).all())
    assert bool((volume[unclipped] >= lower[unclipped] - 1e-9).all())


def extent(region: torch.Tensor) -> list[int]:
    """Per axis, the length of the span of a non-empty bool region's True pixels."""
    lengths = []
    for axis in range(region.ndim):
        others = tuple(a for a in range(region.ndim) if a != axis)
        hit = (region.any(dim=others) if others else region).nonzero().flatten()
        lengths.append(int(hit[-1] - hit[0] + 1))
    return lengths


@pytest.mark.parametrize("size,box", [((30,), 7), ((9, 10, 11), (3, 4, 5)), ((8, 8, 8), 3)], ids=str)
@pytest.mark.parametrize("name", ["cutmix", "cutout"])
def test_fixed_boxes_in_nd(name, size, box):
    """A fixed box is a full segment / cuboid of the given sides, clipped at the border; lam is the
    share kept (CutMix)."""
    d = len(size)
    sides = [box] * d if isinstance(box, int) else list(box)
    mixer = lmix.create_mixer(name, size=box, seed=10)
    images, labels, values = constant(64, 1, size)
    out = mixer(images, labels)
    cut = out.images[:, 0].double() != spread(values[:, 0], d)
    known = out.labels_b != labels if name == "cutmix" else torch.ones(64, dtype=torch.bool)
    full = 0
    for i in known.nonzero().flatten().tolist():
        count = int(cut[i].sum())
        assert count > 0
        lengths = extent(cut[i])
        assert math.prod(lengths) == count  # a full segment / cuboid
        assert all(n <= s for n, s in zip(lengths, sides, strict=True))
        full += lengths == sides
        if name == "cutmix":
            assert math.isclose(float(out.lam[i]), 1 - count / math.prod(size), abs_tol=1e-6)
    assert full > 0


def test_manifold_mixup_mixes_sequences_inside_a_model():
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 3))
    mixer = lmix.ManifoldMixup(layers=("0", "1"), seed=0)
    images, labels = torch.rand(6, 2, 16, generator=gen(5)), torch.arange(6) % 3
    for _ in range(4):
        logits, loss, batch = mixer.forward_loss(model, images, labels)
        assert logits.shape == (6, 3) and bool(torch.isfinite(loss))
