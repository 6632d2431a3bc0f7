"""An image file that is there but cannot be read (empty, truncated, random bytes) is one
DataFileError naming it: all of them at once when a split is read into memory, and the file a
DataLoader worker met when streaming."""

from __future__ import annotations

import gc
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lmix.data as D
from tests.data import fakes

KW = dict(batch_size=3, device="cpu", seed=0)  # 6 full batches: no file is left out


def damage(path: Path, how: str) -> None:
    """Make one image file unreadable the way a failed copy or download does."""
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8).tobytes())


@pytest.fixture
def folder(tmp_path) -> Path:
    """18 training and 4 validation 8x8 PNGs in 3 classes."""
    return fakes.write_imagefolder(tmp_path / "imgs", per_class=6, size=(8, 8))


def _epoch(loader) -> int:
    loader.set_epoch(0)
    return sum(len(labels) for _, labels in loader)


DAMAGE = ["empty", "truncated", "random"]


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("split, name", [("train", "dog/4.png"), ("train", "cat/0.png"), ("val", "emu/1.png")])
def test_in_memory_names_the_file_before_training(folder, how, split, name):
    bad = folder / split / name  # train/cat/0.png is the first image: it fixes the image size
    damage(bad, how)
    with pytest.raises(D.DataFileError) as info:
        D.build_loaders("imagefolder", root=folder, in_memory=True, **KW)
    err = info.value
    assert err.path == str(bad) and not err.others
    assert str(bad) in str(err) and "remove it or replace it" in str(err) and "\n" not in str(err)
    assert ("empty file" in err.problem) == (how == "empty")


def test_in_memory_names_every_unreadable_file(folder):
    bad = [folder / "train" / "cat" / "2.png", folder / "train" / "dog" / "5.png", folder / "train" / "emu" / "3.png"]
    for path, how in zip(bad, DAMAGE):
        damage(path, how)
    with pytest.raises(D.DataFileError) as info:
        D.load_tensors("imagefolder", root=folder, train=True)
    err = info.value
    assert (err.path, err.others) == (str(bad[0]), (str(bad[1]), str(bad[2])))
    assert str(err).startswith("3 image files cannot be read") and all(str(p) in str(err) for p in bad)
    assert "\n" not in str(err)


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_names_the_file_a_worker_met(folder, how, workers):
    bad = folder / "train" / "emu" / "2.png"
    train, test, _ = D.build_loaders("imagefolder", root=folder, in_memory=False, num_workers=workers, **KW)
    assert _epoch(train) == 18 and _epoch(test) == 4  # the files are listed, not read, up front
    damage(bad, how)
    with pytest.raises(D.DataFileError) as info:
        _epoch(train)
    assert info.value.path == str(bad) and "\n" not in str(info.value)
    assert _epoch(test) == 4  # the other split does not hold the file


@pytest.mark.parametrize("how", [*DAMAGE, "a bug in a transform"])
def test_streaming_stops_its_workers_when_an_epoch_fails(folder, monkeypatch, how):
    """Once the error is let go, not when the garbage collector finds the abandoned DataLoader
    iterator: then it waits 5 s for each worker."""
    train, _, _ = D.build_loaders("imagefolder", root=folder, in_memory=False, num_workers=2, **KW)
    if how in DAMAGE:
        damage(folder / "train" / "dog" / "1.png", how)
    else:

        def broken(self, image):
            raise ArithmeticError(how)

        monkeypatch.setattr(D.loaders.FitSize, "__call__", broken)
    gc.disable()
    try:
        with pytest.raises(D.DataFileError if how in DAMAGE else ArithmeticError):
            _epoch(train)
        assert not multiprocessing.active_children()
    finally:
        gc.enable()


def test_streaming_passes_on_other_worker_errors(folder, monkeypatch):
    """An error that is not an unreadable file is not turned into one."""
    train, _, _ = D.build_loaders("imagefolder", root=folder, in_memory=False, num_workers=2, **KW)

    def broken(self, image):
        raise ArithmeticError("a bug in a transform")

    monkeypatch.setattr(D.loaders.FitSize, "__call__", broken)
    with pytest.raises(Exception, match="a bug in a transform") as info:
        _epoch(train)
    assert not isinstance(info.value, D.DataFileError)


LOADS = [dict(in_memory=True), dict(in_memory=False, num_workers=0), dict(in_memory=False, num_workers=2)]
LOAD_IDS = ["in-memory", "streamed", "streamed-by-workers"]


def _train_epoch(folder: Path, load: dict) -> int:
    """Build the loaders (reading a split into memory) and go through one training epoch."""
    train, _, _ = D.build_loaders("imagefolder", root=folder, **load, **KW)
    return _epoch(train)


@pytest.mark.parametrize("load", LOADS, ids=LOAD_IDS)
@pytest.mark.parametrize("sides", fakes.REFUSED_SIDES + fakes.HUGE_SIDES, ids=str)
def test_an_image_over_pillows_limit_names_the_file_and_what_to_do(folder, monkeypatch, sides, load):
    """As ``lmix show --images`` says of it: its size, Pillow's limit, shrink it (workers fork: the limit holds there)."""
    bad = folder / "train" / "emu" / "2.png"
    if sides in fakes.HUGE_SIDES:  # Pillow's own limit
        fakes.write_png_claiming(bad, *sides)
    else:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", fakes.PIXEL_LIMIT)
        Image.new("RGB", sides).save(bad)
    with pytest.raises(D.DataFileError) as info:
        _train_epoch(folder, load)
    err = info.value
    assert err.path == str(bad) and "\n" not in str(err)
    assert err.problem.startswith(f"{sides[0] * sides[1]} pixels, over the ") and "Pillow" in err.problem
    assert "shrink it" in err.problem


@pytest.mark.parametrize("load", LOADS, ids=LOAD_IDS)
@pytest.mark.parametrize("sides", fakes.WARNED_SIDES, ids=str)
def test_an_image_pillow_warns_about_is_trained_on(folder, monkeypatch, sides, load):
    """Between MAX_IMAGE_PIXELS and twice it Pillow warns (in the process that decodes) and the image is used."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", fakes.PIXEL_LIMIT)
    Image.new("RGB", sides, (10, 200, 10)).save(folder / "train" / "emu" / "2.png")
    if load.get("num_workers"):
        assert _train_epoch(folder, load) == 18
    else:
        with pytest.warns(Image.DecompressionBombWarning):
            assert _train_epoch(folder, load) == 18
