"""The two training-data paths, both yielding ``(images float32 (B, C, H, W), labels int64 (B,))`` on the device.

* :class:`DeviceLoader` (airbench style): the whole split stays a uint8 tensor on the training
  device; order, crop, flip and normalisation are batched tensor ops there. Time series are
  served the same way from a float32 ``(N, C, L)`` tensor, as ``(B, C, L)`` batches.
* :class:`StreamingLoader`: a torchvision dataset + v2 transforms in ``torch.utils.data.DataLoader``
  workers, for data that does not fit in memory.

Both are deterministic functions of ``(seed, epoch, rank)``: nothing carries over between epochs,
so a run resumed at epoch ``e`` (``load_state_dict`` or ``set_epoch(e)``) sees exactly the batches an
uninterrupted run sees. Call ``set_epoch(epoch)`` before iterating each epoch.

Sharding over ``world_size`` ranks: training uses one permutation per epoch that is identical on
every rank (seeded by ``(seed, epoch)``), padded by wrapping around to a multiple of ``world_size``
and dealt out ``rank::world_size``, so every rank has the same number of batches. Test order is
fixed and unpadded: rank ``r`` takes samples ``r::world_size``, so summing correct predictions over
ranks and dividing by ``dataset_size`` gives the exact accuracy (ranks may differ by one batch:
evaluate without collectives inside the loop, e.g. with the unwrapped module).
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchvision.transforms import v2

from lmix.augment.ops import crop_flip_at, normalize_with, sample_crop_offsets, sample_flips
from lmix.data.checks import check_flag, check_index, check_loader_args
from lmix.data.cpus import available_cpus
from lmix.data.info import DataFileError, DatasetInfo
from lmix.data.seeding import STREAM_AUGMENT, STREAM_ORDER, STREAM_SAMPLE, derive_seed, generator
from lmix.data.sources import fit_size, read_image
from lmix.errors import LmixValueError

__all__ = [
    "DeviceLoader",
    "FileDataset",
    "SeededTransformDataset",
    "StreamingLoader",
    "train_transform",
    "test_transform",
]


def _shard_sizes(
    n: int, *, train: bool, rank: int, world_size: int, batch_size: int, drop_last: bool
) -> tuple[int, int]:
    """(samples per epoch, batches per epoch) for this rank."""
    per_rank = math.ceil(n / world_size) if train else len(range(rank, n, world_size))
    batches = per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
    samples = batches * batch_size if drop_last else per_rank
    return samples, batches


def shard_indices(n: int, *, train: bool, seed: int, epoch: int, rank: int, world_size: int) -> torch.Tensor:
    """This rank's sample indices for ``epoch`` (CPU int64), before dropping a last partial batch.

    Train: a permutation seeded by ``(seed, epoch)`` (identical on all ranks), wrapped around to a
    multiple of ``world_size``, then ``rank::world_size``. Test: ``arange(n)[rank::world_size]``.
    """
    if not train:
        return torch.arange(rank, n, world_size)
    perm = torch.randperm(n, generator=generator(seed, epoch, STREAM_ORDER))
    total = math.ceil(n / world_size) * world_size
    if total > n:  # wrap around like DistributedSampler, so every rank gets the same count
        perm = torch.cat([perm, perm.repeat(math.ceil((total - n) / n))[: total - n]])
    return perm[rank:total:world_size]


class DeviceLoader:
    """Batches from a uint8 tensor kept on the training device (see the module docstring).

    Args:
        images_u8: uint8 ``(N, C, H, W)``, or float32 ``(N, C, L)`` sequences (of length
            ``info.image_size``); moved to ``device`` once.
        labels: int ``(N,)``.
        info: the data set's :class:`DatasetInfo` (mean, std, crop_padding, flip).
        batch_size: samples per batch.
        train: shuffle and augment (True) or fixed order without augmentation (False).
        device: where the data lives and the batches are produced.
        seed: base seed; order from ``(seed, epoch)``, augmentation from ``(seed, epoch, rank)``.
        rank: this process's rank in ``[0, world_size)``.
        world_size: number of processes sharing the data.
        drop_last: drop a last partial batch (default: True for train, since BatchNorm cannot
            train on one sample, False for test).
        augment: random crop (``info.crop_padding``) and flip (``info.flip``) in train mode;
            for sequences a random shift and time reversal.
    """

    def __init__(
        self,
        images_u8: torch.Tensor,
        labels: torch.Tensor,
        *,
        info: DatasetInfo,
        batch_size: int,
        train: bool,
        device: torch.device | str,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool | None = None,
        augment: bool = True,
    ) -> None:
        batch_size, seed, rank, world_size = check_loader_args(
            batch_size=batch_size, seed=seed, rank=rank, world_size=world_size, train=train
        )
        if not isinstance(images_u8, torch.Tensor) or not (
            (images_u8.dtype == torch.uint8 and images_u8.ndim == 4)
            or (images_u8.dtype == torch.float32 and images_u8.ndim == 3)
        ):
            raise LmixValueError(
                "images_u8 must be a uint8 tensor of shape (N, C, H, W) or a float32 one of shape (N, C, L) (sequences)"
            )
        if images_u8.ndim - 2 != info.spatial_dims:
            kind = "sequences (N, C, L)" if info.spatial_dims == 1 else "images (N, C, H, W)"
            raise LmixValueError(f"{info.name} holds {kind}, got a tensor of shape {tuple(images_u8.shape)}")
        if not isinstance(labels, torch.Tensor) or labels.shape != (images_u8.shape[0],) or labels.is_floating_point():
            raise LmixValueError(f"labels must be an integer tensor of shape (N,) = ({images_u8.shape[0]},)")
        if images_u8.shape[1] != info.in_channels or len(info.mean) != images_u8.shape[1]:
            raise LmixValueError(f"images have {images_u8.shape[1]} channels but {info.name} has {info.in_channels}")
        if images_u8.shape[0] == 0:
            raise LmixValueError("the data set is empty")
        check_flag(drop_last, name="drop_last", optional=True)
        self.info = info
        self.device = torch.device(device)
        self.images = images_u8.to(self.device).contiguous()
        self.labels = labels.to(self.device, torch.long)
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = train if drop_last is None else drop_last
        self.augment = bool(augment) and train
        self.epoch = 0
        self._mean = torch.tensor(info.mean, dtype=torch.float32, device=self.device)
        self._std = torch.tensor(info.std, dtype=torch.float32, device=self.device)
        self.num_samples, self._num_batches = _shard_sizes(
            self.dataset_size,
            train=train,
            rank=rank,
            world_size=world_size,
            batch_size=batch_size,
            drop_last=self.drop_last,
        )
        if self._num_batches == 0:
            raise LmixValueError(
                f"batch_size {batch_size} is larger than the {math.ceil(self.dataset_size / world_size)} samples per rank "
                f"and drop_last is set: no batch left; use a smaller batch size or more data"
            )

    @property
    def dataset_size(self) -> int:
        """Samples in the whole split (all ranks together, no padding)."""
        return int(self.labels.shape[0])

    def __len__(self) -> int:
        return self._num_batches

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration produces."""
        self.epoch = check_index(epoch, name="epoch", low=0)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state["seed"])
        self.set_epoch(int(state["epoch"]))

    def epoch_indices(self) -> torch.Tensor:
        """The sample indices (CPU int64, ``(num_samples,)``) this rank visits in the current epoch, in order."""
        idx = shard_indices(
            self.dataset_size,
            train=self.train,
            seed=self.seed,
            epoch=self.epoch,
            rank=self.rank,
            world_size=self.world_size,
        )
        return idx[: self.num_samples]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches()

    def batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate over the current epoch from batch ``start`` (for resuming inside an epoch).

        Yields:
            images float32 ``(B, C, H, W)`` (sequences: ``(B, C, L)``) normalised with
            ``info.mean``/``info.std``, and labels int64 ``(B,)``, both on ``device``.
        """
        check_index(start, name="start", low=0, high=len(self))
        idx = self.epoch_indices().to(self.device)
        offsets = flips = None
        if self.augment:
            # The whole epoch's parameters at once: batch b does not depend on how many batches ran before.
            gen = generator(self.seed, self.epoch, self.rank, STREAM_AUGMENT, device=self.device)
            if self.info.crop_padding > 0:
                offsets = sample_crop_offsets(
                    self.num_samples, self.info.crop_padding, generator=gen, spatial_dims=self.images.ndim - 2
                )
            if self.info.flip:
                flips = sample_flips(self.num_samples, generator=gen)
        bs = self.batch_size
        for b in range(start, len(self)):
            sel = idx[b * bs : (b + 1) * bs]
            x = self.images.index_select(0, sel)
            if self.augment:
                x = crop_flip_at(
                    x,
                    offsets=None if offsets is None else offsets[b * bs : (b + 1) * bs],
                    flips=None if flips is None else flips[b * bs : (b + 1) * bs],
                    padding=self.info.crop_padding,
                )
            yield (
                normalize_with(x, self._mean, self._std, spatial_dims=x.ndim - 2),
                self.labels.index_select(0, sel),
            )


class FitSize:
    """Transform: bring a ``(C, H, W)`` tensor image to ``size`` (see ``lmix.data.sources.fit_size``)."""

    def __init__(self, size: Sequence[int]) -> None:
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return fit_size(image, self.size)


def train_transform(info: DatasetInfo, *, augment: bool = True) -> v2.Compose:
    """torchvision v2 pipeline of the DataLoader path: the same crop/flip/normalisation as DeviceLoader."""
    steps: list[Any] = [v2.ToImage(), FitSize(info.image_size)]
    if augment and info.crop_padding > 0:
        steps.append(v2.RandomCrop(info.image_size, padding=info.crop_padding, fill=0))
    if augment and info.flip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(info.mean), list(info.std))]
    return v2.Compose(steps)


def test_transform(info: DatasetInfo) -> v2.Compose:
    """Test pipeline of the DataLoader path: convert and normalise only."""
    return train_transform(info, augment=False)


class FileDataset(Dataset):
    """``(path, class index)`` samples, read as RGB PIL images with torchvision's ``default_loader``
    (a file that cannot be read raises :class:`DataFileError` naming it)."""

    def __init__(self, samples: Sequence[tuple[str, int]]) -> None:
        self.samples = list(samples)
        self.targets = [c for _, c in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        return read_image(path), target


class SeededTransformDataset(Dataset):
    """Applies ``transform`` to ``base[i]``'s image with the global RNG seeded by ``(seed, epoch, i)``.

    torchvision's v2 transforms draw from the global torch RNG; seeding it per sample (inside a
    ``fork_rng``, so the caller's RNG is untouched) makes every augmented sample a function of
    ``(seed, epoch, index)`` only, whatever the number of workers or the resume point.
    """

    def __init__(self, base: Dataset, transform: Any, *, seed: int, randomized: bool) -> None:
        self.base = base
        self.transform = transform
        self.seed = seed
        self.randomized = randomized
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, target = self.base[index]
        if not self.randomized:
            return self.transform(image), int(target)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, self.epoch, int(index), STREAM_SAMPLE))
            return self.transform(image), int(target)


class _StridedSampler(Sampler[int]):
    """Fixed order, ``rank::world_size``, no padding: exact test metrics when summed over ranks."""

    def __init__(self, n: int, *, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, n, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class StreamingLoader:
    """Batches from a torch ``DataLoader`` over a dataset of ``(PIL image or tensor, label)`` pairs.

    Training uses ``DistributedSampler(shuffle=True, seed=seed)`` (also for one process), so the
    order is the same permutation on every rank for ``(seed, epoch)``; test uses a fixed unpadded
    ``rank::world_size`` order. Images are moved to ``device`` in the iterator. ``batch_size``,
    ``train``, ``device``, ``seed``, ``rank``, ``world_size``, ``drop_last`` and ``augment`` mean
    what they mean for :class:`DeviceLoader`.

    Args:
        base: dataset returning ``(image, label)`` without transforms.
        info: the data set's :class:`DatasetInfo` with ``image_size`` set.
        num_workers: DataLoader worker processes (0: load in the main process); at most
            :func:`available_cpus` are started (more workers than CPUs only compete for them).
    """

    def __init__(
        self,
        base: Dataset,
        *,
        info: DatasetInfo,
        batch_size: int,
        train: bool,
        device: torch.device | str,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool | None = None,
        augment: bool = True,
        num_workers: int = 0,
    ) -> None:
        batch_size, seed, rank, world_size = check_loader_args(
            batch_size=batch_size, seed=seed, rank=rank, world_size=world_size, train=train
        )
        num_workers = check_index(num_workers, name="num_workers", low=0)
        if info.image_size is None:
            raise LmixValueError("info.image_size must be set (load the data set's info with its size first)")
        check_flag(drop_last, name="drop_last", optional=True)
        self.info = info
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = train if drop_last is None else drop_last
        self.augment = bool(augment) and train
        self.epoch = 0
        transform = train_transform(info, augment=self.augment) if train else test_transform(info)
        self.dataset = SeededTransformDataset(base, transform, seed=seed, randomized=self.augment)
        n = len(self.dataset)
        if n == 0:
            raise LmixValueError("the data set is empty")
        self.num_samples, self._num_batches = _shard_sizes(
            n, train=train, rank=rank, world_size=world_size, batch_size=batch_size, drop_last=self.drop_last
        )
        if self._num_batches == 0:
            raise LmixValueError(
                f"batch_size {batch_size} is larger than the {math.ceil(n / world_size)} samples per rank "
                f"and drop_last is set: no batch left; use a smaller batch size or more data"
            )
        if train:
            self.sampler: Sampler[int] = DistributedSampler(
                self.dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False
            )
        else:
            self.sampler = _StridedSampler(n, rank=rank, world_size=world_size)
        self.num_workers = min(num_workers, available_cpus())
        # Own generator: the DataLoader draws its workers' base seed from it instead of the global RNG.
        self._loader = DataLoader(
            self.dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            drop_last=self.drop_last,
            persistent_workers=False,  # workers are re-forked per epoch and see the new dataset.epoch
            generator=generator(seed, rank, STREAM_SAMPLE),
        )

    @property
    def dataset_size(self) -> int:
        return len(self.dataset)

    def __len__(self) -> int:
        return self._num_batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_index(epoch, name="epoch", low=0)
        self.dataset.epoch = self.epoch
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.set_epoch(self.epoch)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        seed = int(state["seed"])
        if seed != self.seed:
            self.seed = self.dataset.seed = seed
            if isinstance(self.sampler, DistributedSampler):
                self.sampler.seed = seed
        self.set_epoch(int(state["epoch"]))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This epoch's batches.

        Raises:
            DataFileError: a file of the data set cannot be read (one line naming it, also when a
                worker process met it).
        """
        non_blocking = self.device.type == "cuda"
        done = 0
        batches = iter(self._loader)
        try:
            for images, labels in batches:
                done += 1
                yield (
                    images.to(self.device, non_blocking=non_blocking),
                    labels.to(self.device, non_blocking=non_blocking),
                )
            return
        except Exception as err:
            if self.num_workers == 0:
                raise  # raised here: a DataFileError already names its file
            failed = err
        # The file is read again past the except clause, so that its error holds nothing of the
        # worker's error (as __context__), whose traceback holds the DataLoader iterator (torch's
        # re-raise keeps it in a reference cycle too: its frames are cleared). With this frame letting
        # go of both, the iterator is freed with the error and stops its workers at once, where the
        # garbage collector would find it later and then wait 5 s for each worker.
        traceback.clear_frames(failed.__traceback__)
        unreadable = self._unreadable_file(done)
        try:
            raise failed if unreadable is None else unreadable
        finally:
            del failed, batches

    def _unreadable_file(self, batch: int) -> DataFileError | None:
        """The error of the first unreadable sample of this epoch's batch ``batch``, or None.

        A worker's exception reaches this process as the text of its traceback, in the order of
        the batches: the failed batch is the one after those delivered, and reading its samples
        here again names the file.
        """
        order = list(self.sampler)[batch * self.batch_size : (batch + 1) * self.batch_size]
        for index in order:
            try:
                self.dataset.base[index]
            except DataFileError as err:
                return err
        return None
