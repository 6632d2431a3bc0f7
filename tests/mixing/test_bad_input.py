"""Bad input: a ValueError or TypeError whose message names the problem."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import lmix
from tests.mixing._util import accepts, config_id, mixer_configs

CONFIGS = mixer_configs(combinations=True)
X = torch.rand(4, 3, 8, 8)
Y = torch.arange(4)


def with_each_param(param: str) -> list[str]:
    """Registered mixers whose constructor takes ``param``."""
    return [name for name in lmix.list_mixers() if accepts(name, param)]


BAD_BATCHES = [
    ("uint8", torch.zeros(4, 3, 8, 8, dtype=torch.uint8), Y, TypeError, r"floating point.*torch\.uint8"),
    ("int64", torch.zeros(4, 3, 8, 8, dtype=torch.int64), Y, TypeError, r"floating point.*torch\.int64"),
    ("complex", torch.zeros(4, 3, 8, 8, dtype=torch.complex64), Y, TypeError, r"floating point"),
    ("numpy images", np.zeros((4, 3, 8, 8), dtype=np.float32), Y, TypeError, r"images must be a torch\.Tensor"),
    ("empty", torch.rand(0, 3, 8, 8), Y[:0], ValueError, r"at least one sample"),
    ("H < 2", torch.rand(4, 3, 1, 8), Y, ValueError, r"H >= 2 and W >= 2.*\(1, 8\)"),
    ("W < 2", torch.rand(4, 3, 8, 1), Y, ValueError, r"H >= 2 and W >= 2.*\(8, 1\)"),
    ("labels 2-D", X, Y[:, None], ValueError, r"labels must have shape \(B,\)"),
    ("labels 0-D", X, torch.tensor(1), ValueError, r"labels must have shape \(B,\)"),
    ("labels short", X, Y[:3], ValueError, r"one entry per image: expected 4, got 3"),
    ("labels long", X, torch.arange(5), ValueError, r"one entry per image: expected 4, got 5"),
    ("labels float", X, Y.float(), TypeError, r"labels must be an integer tensor.*float32"),
    ("labels bool", X, Y > 1, TypeError, r"labels must be an integer tensor.*bool"),
    ("labels list", X, [0, 1, 2, 3], TypeError, r"labels must be a torch\.Tensor"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
@pytest.mark.parametrize("case", BAD_BATCHES, ids=lambda c: c[0])
def test_bad_batch(config, case):
    _, images, labels, error, match = case
    name, params = config
    mixer = lmix.create_mixer(name, **params, seed=0)
    with pytest.raises(error, match=match):
        mixer(images, labels)


SHAPES = {1: "(B, C, L)", 2: "(B, C, H, W)", 3: "(B, C, D, H, W)"}


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
@pytest.mark.parametrize("rank", [0, 1, 2, 3, 4], ids=lambda d: f"{d}-D")
def test_batch_rank(config, rank):
    """(B, C, *spatial) with the mixer's numbers of spatial axes mixes; any other rank is one clear error
    naming the shapes the mixer takes, and so is a spatial side below 2."""
    name, params = config
    mixer = lmix.create_mixer(name, **params, seed=0)
    images = torch.rand(4, 2, *(3,) * rank)
    if rank in mixer.spatial_ranks:
        assert mixer(images, Y).images.shape == images.shape
        short = torch.rand(4, 2, *(3,) * (rank - 1), 1)
        names = {1: "L", 2: "H and W", 3: "D and H and W"}[rank].replace("and", ">= 2 and")
        with pytest.raises(ValueError, match=rf"images must have {names} >= 2, got .*1\)?$"):
            mixer(short, Y)
        return
    allowed = [SHAPES[d] for d in mixer.spatial_ranks]
    shapes = allowed[0] if len(allowed) == 1 else ", ".join(allowed[:-1]) + " or " + allowed[-1]
    with pytest.raises(ValueError, match=re.escape(f"images must have shape {shapes} (")) as info:
        mixer(images, Y)
    assert str(info.value).endswith(f"got shape {tuple(images.shape)}") and "\n" not in str(info.value)


def test_patchup_takes_images_only():
    with pytest.raises(ValueError, match=r"^PatchUp: images must have shape \(B, C, H, W\) \(4 dimensions\), got"):
        lmix.create_mixer("patchup", seed=0)(torch.rand(4, 2, 8), Y)
    assert lmix.create_mixer("lmix+patchup").spatial_ranks == (2,)


@pytest.mark.parametrize("name", with_each_param("alpha"))
@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan"), float("inf"), "1", True, None])
def test_bad_alpha(name, alpha):
    with pytest.raises(ValueError, match=r"alpha must be a finite number > 0, got"):
        lmix.create_mixer(name, alpha=alpha)


@pytest.mark.parametrize("name", with_each_param("decay"))
@pytest.mark.parametrize("decay", [-0.5, float("nan"), float("inf")])
def test_bad_decay(name, decay):
    with pytest.raises(ValueError, match=r"decay must be a finite number >= 0"):
        lmix.create_mixer(name, decay=decay)


@pytest.mark.parametrize("param", ["k", "image_k"])
@pytest.mark.parametrize("value", [-1.0, -1e-9, float("nan")])
def test_bad_k(param, value):
    for name in with_each_param(param):
        with pytest.raises(ValueError, match=rf"{param} must be a finite number >= 0"):
            lmix.create_mixer(name, **{param: value})


@pytest.mark.parametrize("size", [0, -3, (16, 0), (0, 16), (-1, 4), (4, 0, 4), (), (1, 2, 3, 4), 2.5, "16", True])
@pytest.mark.parametrize("name", ["cutout", "cutmix"])
def test_bad_box_size(name, size):
    with pytest.raises(ValueError, match=r"size must be"):
        lmix.create_mixer(name, size=size)


@pytest.mark.parametrize("name", ["cutout", "cutmix"])
@pytest.mark.parametrize("size,rank", [((3, 5), 1), ((3, 5), 3), ((2, 3, 4), 2), ((2, 3, 4), 1)])
def test_box_sides_must_match_the_spatial_axes(name, size, rank):
    """A box of unequal sides needs one side per spatial axis (equal sides are a cube in any dimension)."""
    mixer = lmix.create_mixer(name, size=size, seed=0)
    with pytest.raises(
        ValueError,
        match=rf"size {re.escape(str(size))} gives {len(size)} sides but the images have "
        rf"{rank} spatial axes",
    ):
        mixer(torch.rand(4, 1, *(6,) * rank), Y)
    square = lmix.create_mixer(name, size=(3,) * len(size), seed=0)
    assert square(torch.rand(4, 1, *(6,) * rank), Y).images.shape == (4, 1, *(6,) * rank)


@pytest.mark.parametrize("name", with_each_param("mode"))
def test_bad_mode(name):
    with pytest.raises(ValueError, match=r"mode must be 'sample'.*or 'batch'.*got 'elem'"):
        lmix.create_mixer(name, mode="elem")


@pytest.mark.parametrize("name", lmix.list_mixers())
@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_bad_seed(name, seed):
    with pytest.raises(ValueError, match=r"seed must be a non-negative integer or None"):
        lmix.create_mixer(name, seed=seed)


def test_numpy_scalars_are_valid_hyperparameters():
    m = lmix.create_mixer("lmix", alpha=np.float32(0.5), decay=np.float64(2.0), k=np.int64(1), seed=np.int64(3))
    assert (m.alpha, m.decay, m.k, m.seed) == (0.5, 2.0, 1.0, 3)
    assert lmix.create_mixer("cutout", size=np.int64(8)).size == (8, 8)
    lmix.fourier_masks(torch.tensor([0.5]), (np.int64(8), np.int64(6)), decay=np.float32(3.0))


@pytest.mark.parametrize(
    "lam,error,match",
    [
        (torch.tensor([0.5, 1.5]), ValueError, r"lam values must lie in \[0, 1\], got 1\.5"),
        (torch.tensor([-0.1]), ValueError, r"lam values must lie in \[0, 1\], got -0\.1"),
        (torch.tensor([float("nan")]), ValueError, r"lam values must lie in \[0, 1\], got nan"),
        (torch.tensor([[0.5]]), ValueError, r"lam must be 1-D"),
        (torch.tensor([1]), TypeError, r"lam must be a floating-point tensor"),
        (0.5, TypeError, r"lam must be a 1-D torch\.Tensor"),
    ],
    ids=["above", "below", "nan", "2-D", "int", "float"],
)
def test_fourier_masks_bad_lam(lam, error, match):
    with pytest.raises(error, match=match):
        lmix.fourier_masks(lam, (8, 8))


@pytest.mark.parametrize(
    "size,match",
    [
        ((1, 8), r"H >= 2 and W >= 2, got \(H, W\) = \(1, 8\)"),
        ((8, 1), r"H >= 2 and W >= 2, got \(H, W\) = \(8, 1\)"),
        ((1,), r"L >= 2, got L = 1"),
        ((8, 1, 8), r"D >= 2 and H >= 2 and W >= 2, got \(D, H, W\) = \(8, 1, 8\)"),
        ((8, 8, 8, 8), r"1, 2 or 3 integers: \(L,\), a pair of integers \(H, W\) or \(D, H, W\)"),
        ((), r"1, 2 or 3 integers"),
        ((8.0, 8), r"pair of integers \(H, W\)"),
        (8, r"pair of integers \(H, W\)"),
        ("88", r"1, 2 or 3 integers"),
    ],
)
def test_fourier_masks_bad_size(size, match):
    with pytest.raises(ValueError, match=match):
        lmix.fourier_masks(torch.tensor([0.5]), size)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"decay": -1.0}, r"decay must be a finite number >= 0"),
        ({"k": -0.1}, r"k must be a finite number >= 0"),
        ({"k": float("inf")}, r"k must be a finite number >= 0"),
    ],
)
def test_fourier_masks_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lmix.fourier_masks(torch.tensor([0.5]), (8, 8), **kwargs)


def test_unknown_mixer_lists_the_known_ones():
    for name in ("lmixx", "", "lmix+nope"):
        with pytest.raises(ValueError, match=r"unknown mixer") as info:
            lmix.create_mixer(name)
        for known in lmix.list_mixers():
            assert known in str(info.value)


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("mixup", {"decay": 3.0}, r"unknown parameter\(s\) \['decay'\] for mixer 'mixup'; allowed: \[.*'alpha'"),
        ("cutout", {"alpha": 1.0}, r"unknown parameter\(s\) \['alpha'\] for mixer 'cutout'; allowed: \[.*'size'"),
        ("none", {"foo": 1}, r"unknown parameter\(s\) \['foo'\]"),
        ("lmix+mixup", {"size": 16}, r"unknown parameter\(s\) \['size'\] for 'lmix\+mixup'"),
    ],
)
def test_unknown_parameter(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        lmix.create_mixer(name, **kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"p": (0.5, 0.6)}, r"p must hold one probability per mixer \(2\) summing to 1"),
        ({"p": (1.0,)}, r"p must hold one probability per mixer \(2\)"),
        ({"p": (1.5, -0.5)}, r"p must be a number in \[0, 1\], got 1\.5"),
        ({"schedule": "roundrobin"}, r"schedule must be 'random' or 'alternate', got 'roundrobin'"),
    ],
)
def test_bad_choice(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lmix.create_mixer("lmix+mixup", **kwargs)


def test_choice_needs_two_mixers():
    with pytest.raises(ValueError, match=r"at least two Mixer instances"):
        lmix.MixChoice([lmix.LMix()])
    with pytest.raises(ValueError, match=r"at least two Mixer instances"):
        lmix.MixChoice([lmix.LMix(), "mixup"])


def test_positional_hyperparameters_are_refused():
    with pytest.raises(TypeError):
        lmix.LMix(1.0)  # keyword-only: alpha=1.0


def mixed():
    return lmix.create_mixer("mixup", seed=0)(X, torch.tensor([0, 1, 2, 9]))


@pytest.mark.parametrize("num_classes", [5, 9])
def test_labels_out_of_range_for_soft_targets_and_loss(num_classes):
    batch = mixed()
    with pytest.raises(
        ValueError, match=rf"labels_a must lie in \[0, {num_classes - 1}\] for num_classes={num_classes}, got 9"
    ):
        batch.soft_targets(num_classes)
    with pytest.raises(ValueError, match=rf"must lie in \[0, {num_classes - 1}\] for num_classes={num_classes}, got 9"):
        lmix.mixed_cross_entropy(torch.zeros(4, num_classes), batch)


def test_negative_labels_and_bad_num_classes():
    batch = lmix.create_mixer("none")(X, torch.tensor([0, -1, 2, 3]))
    with pytest.raises(ValueError, match=r"labels_a must lie in \[0, 9\].*got -1"):
        batch.soft_targets(10)
    for bad in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match=r"num_classes must be an integer >= 1"):
            mixed().soft_targets(bad)


@pytest.mark.parametrize("smoothing", [-0.1, 1.5, float("nan")])
def test_bad_label_smoothing(smoothing):
    batch = mixed()
    with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\]"):
        batch.soft_targets(10, label_smoothing=smoothing)
    with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\]"):
        lmix.mixed_cross_entropy(torch.zeros(4, 10), batch, label_smoothing=smoothing)


def test_bad_logits():
    batch = mixed()
    with pytest.raises(ValueError, match=r"logits must have shape \(B, num_classes\), got \(4,\)"):
        lmix.mixed_cross_entropy(torch.zeros(4), batch)
    with pytest.raises(ValueError, match=r"logits have 3 rows but the batch has 4 samples"):
        lmix.mixed_cross_entropy(torch.zeros(3, 10), batch)
