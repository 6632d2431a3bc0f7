"""Writers of tiny data sets in the real on-disk formats that torchvision (and lmix) read."""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the CIFAR python version is cPickle protocol 2


def write_cifar10(root: Path, *, per_batch: int = 4, n_test: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """``root/cifar-10-batches-py`` with 5 train batches and a test batch; returns the arrays written (N, 3, 32, 32)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for b in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch).tolist()
        _pickle(
            folder / f"data_batch_{b}",
            {
                "batch_label": f"training batch {b} of 5",
                "labels": y,
                "data": x,
                "filenames": [f"f{i}.png" for i in range(per_batch)],
            },
        )
        train_x.append(x)
        train_y += y
    tx = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    ty = rng.integers(0, 10, n_test).tolist()
    _pickle(
        folder / "test_batch",
        {"batch_label": "testing batch 1 of 1", "labels": ty, "data": tx, "filenames": ["t.png"] * n_test},
    )
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072})
    return {
        "train_x": np.concatenate(train_x).reshape(-1, 3, 32, 32),
        "train_y": np.array(train_y),
        "test_x": tx.reshape(-1, 3, 32, 32),
        "test_y": np.array(ty),
        "classes": np.array(names),
    }


def write_cifar100(root: Path, *, n_train: int = 10, n_test: int = 5, seed: int = 1) -> dict[str, np.ndarray]:
    """``root/cifar-100-python`` (train, test, meta with fine labels)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, n).tolist()
        _pickle(
            folder / split,
            {
                "filenames": ["a.png"] * n,
                "batch_label": split,
                "fine_labels": fine,
                "coarse_labels": [f // 5 for f in fine],
                "data": x,
            },
        )
        out[f"{split}_x"], out[f"{split}_y"] = x.reshape(-1, 3, 32, 32), np.array(fine)
    _pickle(
        folder / "meta",
        {
            "fine_label_names": [f"class{i:02d}" for i in range(100)],
            "coarse_label_names": [f"super{i}" for i in range(20)],
        },
    )
    return out


def patch_cifar_md5(monkeypatch: pytest.MonkeyPatch, cls: type, root: Path) -> None:
    """Point torchvision's md5 table for ``cls`` at the test files (the real table stays for real data).

    torchvision checks every CIFAR file against the md5 of the upstream release; test files cannot
    match it, so the test swaps the class attributes for the duration of the test only.
    """
    folder = Path(root) / cls.base_folder
    monkeypatch.setattr(cls, "train_list", [[f, md5(folder / f)] for f, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[f, md5(folder / f)] for f, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(folder / cls.meta["filename"])})


def _idx(path: Path, arr: np.ndarray) -> None:
    magic = {3: 0x0803, 1: 0x0801}[arr.ndim]
    with open(path, "wb") as f:
        f.write(
            struct.pack(">I", magic)
            + b"".join(struct.pack(">I", d) for d in arr.shape)
            + arr.astype(np.uint8).tobytes()
        )


def write_fashion_mnist(root: Path, *, n_train: int = 12, n_test: int = 7, seed: int = 2) -> dict[str, np.ndarray]:
    """``root/FashionMNIST/raw`` with the four uncompressed idx files."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, split, n in (("train", "train", n_train), ("t10k", "test", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        _idx(raw / f"{prefix}-images-idx3-ubyte", x)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", y)
        out[f"{split}_x"], out[f"{split}_y"] = x[:, None], y.astype(np.int64)
    return out


def write_svhn(
    root: Path, monkeypatch: pytest.MonkeyPatch, *, sizes: dict[str, int] | None = None, seed: int = 3
) -> dict[str, np.ndarray]:
    """``root/{train,test,extra}_32x32.mat`` (X: 32x32x3xN uint8, y: Nx1 in 1..10 with 10 = digit 0).

    Also points torchvision's SVHN md5 table at the new files (test only, see ``patch_cifar_md5``).
    """
    from scipy.io import savemat
    from torchvision.datasets import SVHN

    sizes = sizes or {"train": 9, "test": 4, "extra": 5}
    rng = np.random.default_rng(seed)
    Path(root).mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in sizes.items():
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
        y[0, 0] = 10  # always include the label that torchvision maps to 0
        path = Path(root) / f"{split}_32x32.mat"
        savemat(path, {"X": x, "y": y})
        url, filename, _ = SVHN.split_list[split]
        monkeypatch.setitem(SVHN.split_list, split, [url, filename, md5(path)])
        out[f"{split}_x"] = np.transpose(x, (3, 2, 0, 1))
        out[f"{split}_y"] = (y[:, 0] % 10).astype(np.int64)
    return out


def _image(path: Path, rng: np.random.Generator, size: tuple[int, int], *, mode: str = "RGB", **save) -> None:
    h, w = size
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path, **save)  # 2-D: mode L


def write_tiny_imagenet(
    root: Path, *, wnids: tuple[str, ...] = ("n02", "n01", "n03"), per_class: int = 3, n_val: int = 5, seed: int = 4
) -> Path:
    """A ``tiny-imagenet-200`` folder under ``root`` (64x64 JPEGs, one of them grayscale); returns it."""
    rng = np.random.default_rng(seed)
    top = Path(root) / "tiny-imagenet-200"
    for wnid in wnids:
        images = top / "train" / wnid / "images"
        images.mkdir(parents=True)
        for i in range(per_class):
            mode = "L" if (wnid, i) == (wnids[0], 0) else "RGB"
            _image(images / f"{wnid}_{i}.JPEG", rng, (64, 64), mode=mode, format="JPEG", quality=95)
        (top / "train" / wnid / f"{wnid}_boxes.txt").write_text(
            "".join(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n" for i in range(per_class))
        )
    (top / "wnids.txt").write_text("\n".join(wnids) + "\n")  # deliberately not sorted
    (top / "val" / "images").mkdir(parents=True)
    lines = []
    for i in range(n_val):
        _image(top / "val" / "images" / f"val_{i}.JPEG", rng, (64, 64), format="JPEG", quality=95)
        lines.append(f"val_{i}.JPEG\t{wnids[i % len(wnids)]}\t0\t0\t63\t63")
    (top / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return top


def write_imagefolder(
    root: Path,
    *,
    classes: tuple[str, ...] = ("cat", "dog", "emu"),
    per_class: int = 3,
    size: tuple[int, int] = (12, 10),
    seed: int = 5,
) -> Path:
    """``root/train/<class>/*.png`` and ``root/val/<class>/*.png`` (val lacks the first class)."""
    rng = np.random.default_rng(seed)
    for split, names, n in (("train", classes, per_class), ("val", classes[1:], 2)):
        for name in names:
            folder = Path(root) / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                _image(folder / f"{i}.png", rng, size)
    return Path(root)


# Image sides (width, height) around Pillow's size checks once ``PIL.Image.MAX_IMAGE_PIXELS`` is set to
# PIXEL_LIMIT: over it, read with a DecompressionBombWarning; over twice it, refused (DecompressionBombError).
PIXEL_LIMIT = 100
WARNED_SIDES = [(11, 10), (1, 101), (200, 1)]
REFUSED_SIDES = [(15, 14), (1, 201), (201, 1)]
# over Pillow's real limit (2 * 89478485 pixels): written by write_png_claiming
HUGE_SIDES = [(14000, 14000), (200_000_000, 1), (1, 200_000_000)]


def write_png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says ``width`` x ``height`` pixels but whose data is that of a 1x1 image.

    Pillow refuses it on opening when the size is over its limit, as it refuses a real image that
    large, without the test writing (or decoding) hundreds of megabytes.
    """
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    # the signature (8 bytes), then IHDR: length (4), type (4), width and height (4 each), 5 more bytes, CRC (4)
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    Path(path).write_bytes(bytes(data))
    return Path(path)
