"""DeviceLoader and StreamingLoader: contract, determinism, sharding, augmentation, hot-path shape."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import TensorDataset

from lmix.augment import crop_flip_at, normalize
from lmix.data import DeviceLoader, StreamingLoader, dataset_info, shard_indices

INFO = dataclasses.replace(dataset_info("cifar10"), image_size=(6, 5), crop_padding=2)


def _data(n=50, c=3, h=6, w=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(1, 256, (n, c, h, w), generator=gen, dtype=torch.uint8)  # nonzero: padding is visible
    return images, torch.arange(n) % 10


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    batches = list(loader)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def test_contract_shapes_dtypes_lengths(device):
    images, labels = _data(50)
    loader = DeviceLoader(images, labels, info=INFO, batch_size=8, train=True, device=device, seed=0)
    assert len(loader) == 6 and loader.num_samples == 48 and loader.dataset_size == 50  # drop_last for train
    batches = list(loader)
    assert len(batches) == 6
    for x, y in batches:
        assert x.shape == (8, 3, 6, 5) and x.dtype == torch.float32 and x.device.type == torch.device(device).type
        assert y.shape == (8,) and y.dtype == torch.int64 and y.device == x.device
    test = DeviceLoader(images, labels, info=INFO, batch_size=8, train=False, device=device, seed=0)
    assert len(test) == 7 and test.num_samples == 50 and [len(y) for _, y in test][-1] == 2


def test_test_mode_is_fixed_order_and_normalised():
    images, labels = _data(20)
    loader = DeviceLoader(images, labels, info=INFO, batch_size=6, train=False, device="cpu", seed=0)
    x, y = _epoch(loader, 0)
    assert torch.equal(y, labels) and torch.equal(x, normalize(images, INFO.mean, INFO.std))
    mean = torch.tensor(INFO.mean).view(1, 3, 1, 1)
    std = torch.tensor(INFO.std).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (images.float() / 255 - mean) / std)
    assert torch.equal(_epoch(loader, 5)[0], x)  # no augmentation, whatever the epoch


def test_train_labels_follow_their_images():
    images, _ = _data(40)
    labels = torch.arange(40)  # label = index: every yielded label names the image it came with
    loader = DeviceLoader(images, labels, info=INFO, batch_size=5, train=True, device="cpu", seed=1, augment=False)
    x, y = _epoch(loader, 2)
    assert torch.equal(x, normalize(images[y], INFO.mean, INFO.std))
    assert sorted(y.tolist()) == list(range(40))  # a permutation


def _as_pixels(x: torch.Tensor, info=INFO) -> torch.Tensor:
    mean, std = torch.tensor(info.mean).view(1, -1, 1, 1), torch.tensor(info.std).view(1, -1, 1, 1)
    return torch.round((x * std + mean) * 255).to(torch.uint8)


def test_train_augmentation_is_a_crop_and_flip_of_the_right_image():
    images, _ = _data(24)
    labels = torch.arange(24)
    loader = DeviceLoader(images, labels, info=INFO, batch_size=8, train=True, device="cpu", seed=3)
    x, y = _epoch(loader, 0)
    pixels = _as_pixels(x)
    p = INFO.crop_padding
    candidates = list(itertools.product(range(2 * p + 1), range(2 * p + 1), (False, True)))
    found = set()
    for out, idx in zip(pixels, y.tolist()):
        src = images[idx].expand(len(candidates), -1, -1, -1)
        offsets = torch.tensor([[r, c] for r, c, _ in candidates])
        flips = torch.tensor([f for _, _, f in candidates])
        matches = (crop_flip_at(src, offsets=offsets, flips=flips, padding=p) == out).flatten(1).all(1)
        assert bool(matches.any()), f"sample {idx} is not a crop/flip of its image"
        found.update(candidates[i] for i in torch.nonzero(matches).flatten().tolist())
    assert any(f for *_, f in found) and not all(f for *_, f in found)
    assert len({(r, c) for r, c, _ in found}) > 5


def test_no_flip_and_no_crop_when_info_says_so():
    images, _ = _data(16)
    info = dataclasses.replace(INFO, flip=False, crop_padding=0)
    loader = DeviceLoader(images, torch.arange(16), info=info, batch_size=16, train=True, device="cpu", seed=0)
    x, y = _epoch(loader, 0)
    assert torch.equal(_as_pixels(x), images[y])


def test_deterministic_per_seed_epoch_rank_and_independent_of_history(device):
    images, labels = _data(60)
    kw = dict(info=INFO, batch_size=7, train=True, device=device, seed=11, world_size=2)
    a = DeviceLoader(images, labels, rank=1, **kw)
    for e in range(3):  # history: epochs 0..2 consumed, epoch 1 partly
        a.set_epoch(e)
        next(iter(a))
    b = DeviceLoader(images, labels, rank=1, **kw)  # a "resumed" loader that jumps straight to epoch 3
    xa, ya = _epoch(a, 3)
    xb, yb = _epoch(b, 3)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    x4, y4 = _epoch(a, 4)
    assert not torch.equal(y4, ya) and not torch.equal(x4, xa)
    other_seed = DeviceLoader(images, labels, rank=1, **{**kw, "seed": 12})
    assert not torch.equal(_epoch(other_seed, 3)[1], ya)


def test_resume_mid_epoch_and_state_dict():
    images, labels = _data(40)
    loader = DeviceLoader(images, labels, info=INFO, batch_size=6, train=True, device="cpu", seed=5)
    loader.set_epoch(7)
    full = list(loader)
    tail = list(loader.batches(start=4))
    assert len(tail) == len(full) - 4
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(full[4:], tail))
    state = loader.state_dict()
    assert state == {"epoch": 7, "seed": 5}
    fresh = DeviceLoader(images, labels, info=INFO, batch_size=6, train=True, device="cpu", seed=0)
    fresh.load_state_dict(state)
    assert torch.equal(torch.cat([x for x, _ in fresh]), torch.cat([x for x, _ in full]))


@pytest.mark.parametrize("n,world", [(50, 3), (48, 4), (5, 2), (2, 3)])
def test_train_shards_are_equal_disjoint_and_cover(n, world):
    shards = [shard_indices(n, train=True, seed=4, epoch=2, rank=r, world_size=world) for r in range(world)]
    assert len({s.numel() for s in shards}) == 1  # same count on every rank
    everything = torch.cat(shards)
    assert set(everything.tolist()) == set(range(n))
    assert everything.numel() - n == (-n) % world  # only the wrap-around padding repeats
    if n % world == 0:
        assert everything.unique().numel() == everything.numel()


def test_train_ranks_use_one_permutation_and_have_equal_batches():
    images, labels = _data(50)
    loaders = [
        DeviceLoader(
            images, torch.arange(50), info=INFO, batch_size=4, train=True, device="cpu", seed=2, rank=r, world_size=3
        )
        for r in range(3)
    ]
    assert len({len(ld) for ld in loaders}) == 1
    seen = [_epoch(ld, 1)[1] for ld in loaders]
    assert not set(seen[0].tolist()) & set(seen[1].tolist())
    assert torch.equal(torch.cat(seen).sort().values, torch.cat(seen).unique())


def test_test_shards_give_exact_accuracy_over_all_samples():
    images, labels = _data(23)
    correct = total = 0
    seen = []
    for r in range(4):
        loader = DeviceLoader(
            images, labels, info=INFO, batch_size=4, train=False, device="cpu", seed=0, rank=r, world_size=4
        )
        _, y = _epoch(loader, 0)
        seen += y.tolist()
        assert loader.num_samples == len(range(r, 23, 4))
        correct += int((y % 2 == 0).sum())
        total += y.numel()
    assert total == 23 and sorted(seen) == sorted(labels.tolist())
    assert correct == int((labels % 2 == 0).sum())


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def _ops_per_batch(batch_size: int) -> int:
    images, labels = _data(4 * batch_size)
    loader = DeviceLoader(images, labels, info=INFO, batch_size=batch_size, train=True, device="cpu", seed=0)
    it = iter(loader)
    next(it)  # per-epoch setup (order, augmentation parameters) happens before the first batch
    with _CountOps() as mode:
        next(it)
    return mode.count


def test_hot_path_is_batched_no_per_sample_python():
    """The number of tensor ops per batch does not grow with the batch size."""
    small, large = _ops_per_batch(2), _ops_per_batch(64)
    assert small == large and small < 40


def test_validation_errors():
    images, labels = _data(10)
    kw = dict(info=INFO, train=True, device="cpu", seed=0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        DeviceLoader(images, labels, batch_size=0, **kw)
    with pytest.raises(ValueError, match="no batch left"):
        DeviceLoader(images, labels, batch_size=11, **kw)
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 1\]"):
        DeviceLoader(images, labels, batch_size=2, rank=2, world_size=2, **kw)
    with pytest.raises(ValueError, match="uint8 tensor"):
        DeviceLoader(images.float(), labels, batch_size=2, **kw)
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        DeviceLoader(images, labels[:5], batch_size=2, **kw)
    with pytest.raises(ValueError, match="channels"):
        DeviceLoader(images[:, :1], labels, batch_size=2, **kw)
    loader = DeviceLoader(images, labels, batch_size=2, **kw)
    with pytest.raises(ValueError, match="epoch must be an integer >= 0"):
        loader.set_epoch(-1)
    assert len(DeviceLoader(images, labels, batch_size=11, drop_last=False, **kw)) == 1


def test_streaming_test_mode_is_bit_identical_to_device_loader():
    images, labels = _data(21)
    base = TensorDataset(images, labels)
    s = StreamingLoader(base, info=INFO, batch_size=4, train=False, device="cpu", seed=0, rank=1, world_size=2)
    d = DeviceLoader(images, labels, info=INFO, batch_size=4, train=False, device="cpu", seed=0, rank=1, world_size=2)
    (xs, ys), (xd, yd) = _epoch(s, 0), _epoch(d, 0)
    assert torch.equal(xs, xd) and torch.equal(ys, yd) and len(s) == len(d) == 3 and s.num_samples == 10


def test_streaming_train_is_deterministic_augmented_and_sharded():
    images, _ = _data(24)
    base = TensorDataset(images, torch.arange(24))
    kw = dict(info=INFO, batch_size=4, train=True, device="cpu", seed=9, world_size=2)
    a = StreamingLoader(base, rank=0, **kw)
    b = StreamingLoader(base, rank=0, num_workers=1, **kw)  # a worker process draws the same augmentation
    xa, ya = _epoch(a, 3)
    xb, yb = _epoch(b, 3)
    assert torch.equal(xa, xb) and torch.equal(ya, yb) and len(a) == 3 and a.num_samples == 12
    assert not torch.equal(_epoch(a, 4)[0], xa)
    other = StreamingLoader(base, rank=1, **kw)
    assert not set(ya.tolist()) & set(_epoch(other, 3)[1].tolist())
    # Each sample is a crop/flip of its own image (torchvision's RandomCrop + RandomHorizontalFlip).
    pixels = _as_pixels(xa)
    assert not torch.equal(pixels, images[ya])
    p = INFO.crop_padding
    cands = list(itertools.product(range(2 * p + 1), range(2 * p + 1), (False, True)))
    offsets, flips = torch.tensor([[r, c] for r, c, _ in cands]), torch.tensor([f for *_, f in cands])
    for out, idx in zip(pixels, ya.tolist()):
        src = images[idx].expand(len(cands), -1, -1, -1)
        assert bool((crop_flip_at(src, offsets=offsets, flips=flips, padding=p) == out).flatten(1).all(1).any())
    state = torch.get_rng_state()
    _epoch(a, 5)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's global RNG is untouched
