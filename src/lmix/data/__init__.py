"""Data sets of the LMix paper and fast loaders.

* :func:`list_datasets`, :func:`dataset_info`: what exists, shapes, normalisation, augmentation.
* :func:`load_tensors`: one split as uint8 ``(N, C, H, W)`` + int64 labels, read through
  torchvision's dataset classes (root conventions: ``lmix.data.sources``).
* :func:`build_loaders`: the trainer's entry point; a :class:`DeviceLoader` (data on the training
  device, batched crop/flip/normalise) or a :class:`StreamingLoader` (torchvision DataLoader, at
  most :func:`available_cpus` workers). An ImageFolder that fits :func:`in_memory_budget`
  decoded (2 GiB, ``$LMIX_IN_MEMORY_MAX_GB``) is decoded once and kept in memory.
* :func:`stratified_subset`: class-balanced subsets for small runs.
* :class:`DataNotFoundError`: missing or corrupted files (a ``FileNotFoundError``, one-line message).
* :class:`DataFileError`: an image file that is there but cannot be read (empty, truncated, not
  an image; an ``LmixValueError`` naming it).
"""

from lmix.data.build import build_loaders, in_memory_budget
from lmix.data.cpus import available_cpus
from lmix.data.info import DataFileError, DataNotFoundError, DatasetInfo, dataset_info, list_datasets
from lmix.data.loaders import DeviceLoader, StreamingLoader, shard_indices
from lmix.data.seeding import derive_seed
from lmix.data.sources import TensorData, default_data_root, load_tensors, resolve_root
from lmix.data.subset import stratified_subset

__all__ = [
    "DataFileError",
    "DataNotFoundError",
    "DatasetInfo",
    "DeviceLoader",
    "StreamingLoader",
    "TensorData",
    "available_cpus",
    "build_loaders",
    "dataset_info",
    "default_data_root",
    "in_memory_budget",
    "derive_seed",
    "list_datasets",
    "load_tensors",
    "resolve_root",
    "shard_indices",
    "stratified_subset",
]
