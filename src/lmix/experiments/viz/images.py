"""Small batches of real photos to show the mixing methods on.

By default the two photos that scikit-learn ships (``china.jpg``, a temple, and ``flower.jpg``,
a dahlia: no download) are cut into eight square crops of different content and zoom, so that
a batch has partners that look different from each other.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.transforms.v2 import functional as TF

from lmix.errors import LmixValueError

__all__ = ["IMAGE_SUFFIXES", "sample_photo_batch", "sample_clip_batch", "load_image_folder"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# (photo index, top, left, side) in the 427x640 scikit-learn photos; china and flower alternate
# so that neighbours in the batch (and most random partners) differ.
_CROPS = (
    (0, 0, 0, 427),  # temple, whole
    (1, 0, 107, 427),  # dahlia, whole
    (0, 40, 130, 180),  # temple roofs
    (1, 90, 210, 200),  # dahlia centre
    (0, 120, 340, 300),  # lake and trees
    (1, 270, 380, 157),  # second dahlia
    (0, 250, 380, 177),  # trees
    (1, 0, 0, 260),  # green background
)


def _square(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, S, S) uint8 square -> (3, size, size) float32 in [0, 1], resized.

    Callers cut the square out first: resizing a 20000x1 strip's short side to 1024 would make a
    3x1024x20480000 image.
    """
    image = TF.resize(image, [size, size], antialias=True)
    return image.to(torch.float32) / 255.0


def sample_photo_batch(size: int = 128) -> torch.Tensor:
    """Eight crops of scikit-learn's sample photos.

    Args:
        size: side of the square crops, in pixels.

    Returns:
        (8, 3, size, size) float32 tensor in [0, 1].
    """
    from sklearn.datasets import load_sample_images

    photos = [torch.tensor(p).permute(2, 0, 1).contiguous() for p in load_sample_images().images]
    crops = [_square(photos[i][:, top : top + side, left : left + side], size) for i, top, left, side in _CROPS]
    return torch.stack(crops)


def sample_clip_batch(frames: int = 16, size: int = 64) -> torch.Tensor:
    """Two short "video clips" as volumes: a camera panning across each of scikit-learn's sample photos.

    Frame ``t`` is a square crop of the photo's full height whose left edge moves evenly from
    the left border to the right one; clip 0 pans over the temple, clip 1 over the dahlia.

    Args:
        frames: depth of the volumes (number of frames), >= 2.
        size: side of the square frames, in pixels.

    Returns:
        (2, 3, frames, size, size) float32 tensor in [0, 1]: (B, C, D, H, W).
    """
    from sklearn.datasets import load_sample_images

    if frames < 2:
        raise LmixValueError(f"frames must be >= 2, got {frames}")
    clips = []
    for photo in load_sample_images().images:
        image = torch.tensor(photo).permute(2, 0, 1).contiguous()
        side, width = image.shape[1], image.shape[2]
        lefts = torch.linspace(0, width - side, frames).round().long().tolist()
        clips.append(torch.stack([_square(image[:, :, left : left + side], size) for left in lefts], dim=1))
    return torch.stack(clips)


def load_image_folder(directory: str | Path, size: int = 128, limit: int = 8) -> torch.Tensor:
    """The first ``limit`` jpg/png images of a folder (sorted by name), as a batch.

    Each image is read as :func:`lmix.data.read_image` reads a training image (grey, palette and
    RGBA converted to RGB, alpha dropped), then its centre square is cut out and resized. An image
    over Pillow's size limit (``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179M pixels) is refused,
    as in training; one over ``MAX_IMAGE_PIXELS`` (about 89M) is read, with Pillow's
    ``DecompressionBombWarning``.

    Args:
        directory: folder holding .jpg, .jpeg or .png files (other files are ignored).
        size: side of the square images, in pixels.
        limit: most images to load.

    Returns:
        (N, 3, size, size) float32 tensor in [0, 1], 1 <= N <= limit.

    Raises:
        FileNotFoundError: the folder does not exist.
        NotADirectoryError: the path is not a folder.
        ValueError: the folder holds no jpg/png image (LmixValueError), or one of them cannot be
            decoded or is too large (:class:`lmix.data.DataFileError`, naming the file).
    """
    from lmix.data.sources import read_image

    path = Path(directory)
    if not path.exists():
        raise FileNotFoundError(f"image folder not found: {str(path)!r}")
    if not path.is_dir():
        raise NotADirectoryError(f"not a folder: {str(path)!r} (give a folder of .jpg/.png images)")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise LmixValueError(f"no .jpg, .jpeg or .png images in {str(path)!r}")
    images = []
    for file in files:
        with read_image(str(file)) as rgb:
            # the centre square before the copy into a tensor: a long strip is never copied whole
            square = TF.pil_to_tensor(TF.center_crop(rgb, [min(rgb.size)] * 2))
        images.append(_square(square, size))
    return torch.stack(images)
