"""lmix.transforms: torchvision v2 batch transforms driven by lmix's core mixers."""

from __future__ import annotations

import PIL.Image
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset, default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2

import lmix
from lmix import transforms as T

MIXING = {"LMix": lmix.LMix, "FMix": lmix.FMix, "MixUp": lmix.Mixup, "CutMix": lmix.CutMix}
ALL = [*MIXING, "Cutout"]


def constant_images(batch: int, size=(12, 10), dtype=torch.float64) -> torch.Tensor:
    """(B, 3, H, W): sample i is the constant i, so a mixed pixel tells where it came from."""
    return torch.arange(batch, dtype=dtype).view(-1, 1, 1, 1).expand(batch, 3, *size).contiguous()


@pytest.mark.parametrize("name", list(MIXING))
@pytest.mark.parametrize("mode", ["sample", "batch"])
@pytest.mark.parametrize("batch", [7, 8])
def test_targets_are_the_exact_share_of_each_class_in_the_image(name, mode, batch):
    # Class of sample i is i and its pixels are i: the mean pixel of a mixed image equals the
    # target-weighted mean class, for masks (exact area) and blends alike.
    t = getattr(T, name)(num_classes=batch, mode=mode, seed=3)
    images = constant_images(batch)
    mixed, targets = t(images, torch.arange(batch))
    assert mixed.shape == images.shape and mixed.dtype == torch.float64
    assert targets.shape == (batch, batch) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(1), torch.ones(batch))
    classes = torch.arange(batch, dtype=torch.float64)
    torch.testing.assert_close(mixed.mean(dim=(1, 2, 3)), targets.double() @ classes, atol=1e-5, rtol=0)
    if name != "MixUp":  # a mask takes every pixel from one of the two images
        for i in range(batch):
            sources = set(mixed[i].unique().tolist())
            assert sources <= {float(c) for c in targets[i].nonzero().flatten().tolist()}
            for c in sources:
                assert (mixed[i] == c).double().mean().item() == pytest.approx(targets[i, int(c)].item())
    assert not torch.equal(mixed, images)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size", [(15,), (4, 5, 6)], ids=["sequences", "volumes"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.uint8])
def test_sequences_and_volumes_are_mixed_with_1d_and_3d_masks(name, size, dtype):
    """Pure (B, C, L) and (B, C, D, H, W) tensors: the core mixer's N-D masks and boxes; the targets
    are the exact share of each class (the mean pixel is the target-weighted class)."""
    batch = 6
    images = torch.arange(batch, dtype=dtype).view(-1, 1, *(1,) * len(size)).expand(batch, 2, *size).contiguous()
    t = getattr(T, name)(num_classes=batch, seed=4)
    mixed, targets = t(images, torch.arange(batch))
    assert mixed.shape == images.shape and mixed.dtype == dtype
    core = getattr(lmix, {"MixUp": "Mixup"}.get(name, name))(seed=4)
    params = core.draw(images)
    assert params.mask is None or params.mask.shape[2:] == size
    expected = core.apply(images.double(), torch.arange(batch), params).images
    if dtype == torch.uint8:
        expected = expected.round()
    torch.testing.assert_close(mixed.double(), expected, rtol=0, atol=0)
    if name != "Cutout":
        dims = tuple(range(1, 2 + len(size)))
        tol = 0.5 if dtype == torch.uint8 else 1e-6
        torch.testing.assert_close(
            mixed.double().mean(dim=dims), targets.double() @ torch.arange(batch).double(), atol=tol, rtol=0
        )


@pytest.mark.parametrize("name", ALL)
def test_the_transform_is_the_core_mixer_sample_then_apply(name):
    torch.manual_seed(0)
    images = torch.rand(6, 3, 9, 11)
    soft = torch.softmax(torch.randn(6, 5), dim=1)
    t = getattr(T, name)(seed=11)  # soft labels: num_classes may be left out
    mixed, targets = t(images, soft)
    core = getattr(lmix, {"MixUp": "Mixup"}.get(name, name))(seed=11)
    params = core.sample(6, (9, 11), device=torch.device("cpu"), generator=core.generator_for("cpu"))
    expected = core.apply(images, torch.arange(6), params)
    torch.testing.assert_close(mixed, expected.images, rtol=0, atol=0)
    lam = params.lam[:, None]
    torch.testing.assert_close(targets, lam * soft + (1 - lam) * soft[params.perm])
    # The same seed gives the same stream; the next batch differs.
    again = getattr(T, name)(seed=11)(images, soft)
    assert torch.equal(again[0], mixed) and torch.equal(again[1], targets)
    assert not torch.equal(t(images, soft)[0], mixed)


def test_cutout_zeroes_a_square_and_keeps_the_labels():
    t = T.Cutout(num_classes=4, size=4, seed=0)
    images = torch.ones(5, 3, 10, 10)
    labels = torch.tensor([0, 1, 2, 3, 1])
    mixed, targets = t(images, labels)
    torch.testing.assert_close(targets, torch.nn.functional.one_hot(labels, 4).float())
    assert set(mixed.unique().tolist()) <= {0.0, 1.0} and (mixed == 0).any()


@pytest.mark.parametrize("name", ALL)
def test_uint8_images_stay_uint8_and_are_rounded(name):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (8,), generator=g)
    mixed, _ = getattr(T, name)(num_classes=10, seed=5)(images, labels)
    ref, _ = getattr(T, name)(num_classes=10, seed=5)(images.float(), labels)
    assert mixed.dtype == torch.uint8
    assert torch.equal(mixed, ref.round().clamp(0, 255).to(torch.uint8))


def test_lmix_sharpening_of_uint8_images_is_clamped():
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mixed, _ = T.LMix(num_classes=3, image_k=4.0, seed=0)(images, torch.tensor([0, 1, 2, 0]))
    ref, _ = T.LMix(num_classes=3, image_k=4.0, seed=0)(images.float(), torch.tensor([0, 1, 2, 0]))
    assert mixed.dtype == torch.uint8 and (ref < 0).any() | (ref > 255).any()
    assert torch.equal(mixed, ref.round().clamp(0, 255).to(torch.uint8))


def test_tv_tensor_images_and_videos_keep_their_type():
    labels = torch.tensor([0, 1, 2, 3])
    image = tv_tensors.Image(torch.rand(4, 3, 8, 8))
    mixed, _ = T.LMix(num_classes=4, seed=0)(image, labels)
    assert type(mixed) is tv_tensors.Image and mixed.shape == image.shape
    # Video (B, T, C, H, W): frame f of sample i is the constant 10 * i + f, so that which
    # sample a pixel came from can be read off every frame; all frames share the sample's mask.
    frames = torch.arange(3, dtype=torch.float32).view(1, 3, 1, 1, 1)
    video = tv_tensors.Video((10 * torch.arange(4.0).view(4, 1, 1, 1, 1) + frames).expand(4, 3, 2, 8, 8).clone())
    mixed, targets = T.LMix(num_classes=4, seed=1)(video, labels)
    assert type(mixed) is tv_tensors.Video and mixed.shape == video.shape
    source = ((mixed - frames) / 10).round()  # (B, T, C, H, W) index of the source sample
    assert torch.equal(source, source[:, :1].expand_as(source))
    own = (source[:, 0, 0] == torch.arange(4.0).view(4, 1, 1)).float().mean(dim=(1, 2))
    torch.testing.assert_close(own, targets[torch.arange(4), labels])


def test_usable_in_random_choice_and_as_a_collate_fn():
    data = TensorDataset(torch.rand(20, 3, 8, 8), torch.randint(0, 10, (20,)))
    choice = v2.RandomChoice([T.LMix(num_classes=10, seed=0), T.MixUp(num_classes=10, seed=1)])
    loader = DataLoader(data, batch_size=6, collate_fn=lambda b: choice(*default_collate(b)))
    batches = list(loader)
    assert [tuple(x.shape) for x, _ in batches] == [(6, 3, 8, 8)] * 3 + [(2, 3, 8, 8)]
    for _, targets in batches:
        assert targets.shape[1] == 10
        torch.testing.assert_close(targets.sum(1), torch.ones(len(targets)))


def test_other_input_structures():
    t = T.FMix(num_classes=3, seed=0)
    images, labels = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 1])
    mixed, targets = t((images, labels))
    assert mixed.shape == images.shape and targets.shape == (4, 3)
    out = T.FMix(num_classes=3, seed=0)({"image": images, "labels": labels, "id": "x"})
    assert out["id"] == "x" and torch.equal(out["image"], mixed) and torch.equal(out["labels"], targets)
    getter = T.FMix(num_classes=3, seed=0, labels_getter=lambda inputs: inputs[1]["y"])
    out = getter(images, {"y": labels})
    assert torch.equal(out[0], mixed) and torch.equal(out[1]["y"], targets)


@pytest.mark.parametrize(
    "make, call, needle",
    [
        (lambda: T.LMix(num_classes=3), lambda t: t(PIL.Image.new("RGB", (8, 8)), torch.tensor([0])), "PIL"),
        (
            lambda: T.CutMix(num_classes=3),
            lambda t: t(
                torch.rand(2, 3, 8, 8),
                torch.tensor([0, 1]),
                tv_tensors.BoundingBoxes(torch.zeros(2, 4), format="XYXY", canvas_size=(8, 8)),
            ),
            "bounding boxes",
        ),
        (lambda: T.LMix(), lambda t: t(torch.rand(2, 3, 8, 8), torch.tensor([0, 1])), "num_classes must be given"),
        (lambda: T.LMix(num_classes=3), lambda t: t(torch.rand(2, 3, 8, 8), torch.tensor([0, 3])), "[0, 2]"),
        (lambda: T.LMix(num_classes=3), lambda t: t(torch.rand(2, 3, 8, 8), torch.rand(2, 4)), "K = num_classes = 3"),
        (lambda: T.LMix(num_classes=3), lambda t: t(torch.rand(2, 3, 8, 8), torch.tensor([0.0, 1.0])), "integer"),
        (
            lambda: T.LMix(num_classes=3),
            lambda t: t(torch.rand(3, 8), torch.tensor([0, 1, 2])),
            "(B, C, L), (B, C, H, W) or (B, C, D, H, W)",
        ),
        (lambda: T.LMix(num_classes=3), lambda t: t(torch.rand(3, 3, 8, 8), torch.tensor([0, 1])), "3 images"),
        (
            lambda: T.LMix(num_classes=3),
            lambda t: t(torch.rand(2, 3, 8, 8), [0, 1]),
            "the labels must be a tensor, got list",
        ),
        (lambda: T.LMix(num_classes=3), lambda t: t(torch.rand(2, 3, 1, 8), torch.tensor([0, 1])), "H >= 2"),
    ],
)
def test_bad_input_is_a_clear_error(make, call, needle):
    with pytest.raises(ValueError) as err:
        call(make())
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"num_classes": 0}, "num_classes must be an integer >= 1"),
        ({"num_classes": 3, "labels_getter": None}, "labels_getter"),
        ({"num_classes": 3, "size": 4}, "unknown parameter(s) ['size']"),
        ({"num_classes": 3, "alpha": -1}, "alpha must be"),
        ({"num_classes": 3, "seed": -1}, "seed must be"),
    ],
)
def test_bad_arguments_are_a_clear_error(kwargs, needle):
    with pytest.raises(ValueError) as err:
        T.LMix(**kwargs)
    assert needle in str(err.value)


def test_repr_names_the_mixer_settings():
    text = repr(T.CutMix(num_classes=10, alpha=0.5))
    assert text.startswith("CutMix(alpha=0.5, size=None, mode='sample'") and text.endswith(", num_classes=10)")


def _worker_targets(seed: int) -> list[torch.Tensor]:
    """Targets of 2 epochs x 4 batches, all batches holding the same data, from 2 workers."""
    data = TensorDataset(torch.zeros(24, 1, 4, 4), torch.arange(6).repeat(4))
    t = T.LMix(num_classes=6, seed=0)
    loader = DataLoader(
        data,
        batch_size=6,
        num_workers=2,
        collate_fn=lambda b: t(*default_collate(b)),
        generator=torch.Generator().manual_seed(seed),
    )
    return [targets for _ in range(2) for _, targets in loader]


def test_dataloader_workers_and_epochs_draw_different_streams_and_repeat_with_the_seed():
    first = _worker_targets(0)
    assert len(first) == 8
    assert len({tuple(t.flatten().tolist()) for t in first}) == 8  # no worker or epoch repeats another
    assert all(torch.equal(a, b) for a, b in zip(first, _worker_targets(0)))
    assert not any(torch.equal(a, b) for a, b in zip(first, _worker_targets(1)))


def test_state_dict_carries_the_random_stream():
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    t = T.LMix(num_classes=4, seed=0)
    t(images, labels)
    state = t.state_dict()
    expected = t(images, labels)
    other = T.LMix(num_classes=4, seed=99)
    other.load_state_dict(state)
    again = other(images, labels)
    assert torch.equal(again[0], expected[0]) and torch.equal(again[1], expected[1])
