"""``lmix show`` and the grid behind it: a valid PNG, folders of images, one-line errors."""

from __future__ import annotations

import os
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from lmix.experiments.viz import build_grid_content, load_image_folder, sample_photo_batch
from tests.cli_helpers import one_line_error, run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _write_png(path: Path, image: torch.Tensor) -> None:
    """Write a (C, H, W) tensor of 0..255 as a PNG (C = 1 grey, 3 RGB, 4 RGBA)."""
    array = image.to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path, format="PNG")


def _check_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    # 8 rows by 8 columns of panels, about 1.5 inches each at 100 dpi.
    assert 800 < height < 3000 and 800 < width < 3000, pixels.shape
    assert pixels.std() > 0.05  # not a blank canvas
    return pixels


def test_show_writes_a_png_of_the_sample_photos(tmp_path, capsys):
    out = tmp_path / "figs" / "mix.png"
    code, stdout, stderr = run_cli(capsys, ["show", "--out", str(out), "--size", "24", "--seed", "3"])
    assert code == 0, stderr
    assert "wrote" in stdout and str(out) in stdout
    _check_png(out)
    # Written atomically: no temporary file left next to it, with a normal file's permissions.
    assert [p.name for p in out.parent.iterdir()] == ["mix.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_show_with_a_folder_of_images(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    gen = torch.Generator().manual_seed(0)
    _write_png(folder / "a.png", torch.randint(0, 256, (3, 40, 30), generator=gen))
    _write_png(folder / "b.PNG", torch.randint(0, 256, (1, 20, 50), generator=gen))  # grey, wide
    _write_png(folder / "c.png", torch.randint(0, 256, (4, 33, 33), generator=gen))  # RGBA
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "mix.png"
    code, stdout, stderr = run_cli(capsys, ["show", "--out", str(out), "--images", str(folder), "--size", "16"])
    assert code == 0, stderr
    assert "3 images" in stdout
    _check_png(out)


@pytest.mark.parametrize("case", ["missing", "empty", "file", "single", "corrupt"])
def test_show_bad_image_folder_is_one_line_exit_2(tmp_path, capsys, case):
    folder = tmp_path / "imgs"
    if case != "missing":
        folder.mkdir()
    if case == "empty":
        (folder / "readme.txt").write_text("no images here")
    if case == "file":
        folder = tmp_path / "picture.png"
        _write_png(folder, torch.zeros(3, 8, 8))
    if case == "single":
        _write_png(folder / "only.png", torch.zeros(3, 8, 8))
    if case == "corrupt":
        _write_png(folder / "good.png", torch.zeros(3, 8, 8))
        (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "mix.png"
    one_line_error(capsys, ["show", "--out", str(out), "--images", str(folder)], "--images")
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--size", "8"], "--size"),
        (["--size", "5000"], "--size"),
        (["--seed", "-1"], "--seed"),
        (["--out", "mix.jpg"], ".png"),
        (["--size", "big"], "--size"),
    ],
)
def test_show_bad_options_are_one_line_exit_2(tmp_path, capsys, argv, needle):
    one_line_error(capsys, ["show", *argv], needle)


def test_sample_photo_batch_is_eight_distinct_crops():
    batch = sample_photo_batch(20)
    assert batch.shape == (8, 3, 20, 20) and batch.dtype == torch.float32
    assert 0.0 <= float(batch.min()) and float(batch.max()) <= 1.0
    flat = batch.flatten(1)
    assert torch.cdist(flat, flat).add(torch.eye(8) * 1e9).min() > 1.0  # no two crops alike


def test_load_image_folder_resizes_and_converts_to_rgb(tmp_path):
    _write_png(tmp_path / "grey.png", torch.full((1, 10, 30), 200))
    _write_png(tmp_path / "rgba.png", torch.full((4, 12, 12), 100))
    batch = load_image_folder(tmp_path, size=8)
    assert batch.shape == (2, 3, 8, 8)
    torch.testing.assert_close(batch[0], torch.full((3, 8, 8), 200 / 255))
    torch.testing.assert_close(batch[1], torch.full((3, 8, 8), 100 / 255))


def test_grid_content_shows_every_method_and_the_k_row():
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(6, 3, 16, 16, generator=gen)
    content = build_grid_content(images, seed=5, show=3, ks=(0.0, 1.0, 4.0), image_ks=(0.0, 2.0))
    labels = [row.label.split("\n")[0] for row in content.rows]
    assert labels == ["batch", "LMix", "FMix", "CutMix", "Mixup", "Cutout", "LMix masks", "LMix image"]
    assert len(content.rows[0].panels) == 6
    for row in content.rows[1:6]:
        assert len(row.panels) == 6  # (mask, mixed image) for 3 samples
        for mask, mixed in zip(row.panels[::2], row.panels[1::2]):
            assert mask.pixels.shape == (16, 16) and mixed.pixels.shape == (16, 16, 3)
            if not row.label.startswith("Mixup"):
                assert set(np.unique(mask.pixels)) <= {0.0, 1.0}
            if "λ=" in mixed.title:
                lam = float(mixed.title.split("λ=")[1])
                assert abs(mask.pixels.mean() - lam) < 0.006  # the title's lam is the mask's area
    k_masks = content.rows[6].panels
    assert [p.title for p in k_masks] == ["k=0 (FMix)", "k=1", "k=4"]
    for panel in k_masks:
        assert panel.pixels.sum() == 128  # lam = 0.5 of 16 x 16
    # Same noise for every k: the masks overlap far more than independent ones (half) would.
    assert (k_masks[0].pixels == k_masks[1].pixels).mean() > 0.75
    assert [p.title for p in content.rows[7].panels] == ["image_k=0", "image_k=2"]
    assert not np.array_equal(content.rows[7].panels[0].pixels, content.rows[7].panels[1].pixels)


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(2, 5), seed=st.integers(0, 2**31 - 1))
def test_grid_content_never_mixes_an_image_with_itself(batch, seed):
    """Small batches (a uniform permutation would pair some images with themselves) show real pairs."""
    images = torch.rand(batch, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    content = build_grid_content(images, seed=seed, ks=(0.0,), image_ks=(0.0, 1.0))
    for row in content.rows[1:5]:  # LMix, FMix, CutMix, Mixup
        titles = [p.title for p in row.panels[1::2]]
        assert len(titles) == min(batch, 4)
        for title in titles:
            a, b = re.fullmatch(r"#(\d+)\+#(\d+), λ=[0-9.]+", title).groups()
            assert a != b, (row.label, title)


def test_grid_content_rejects_a_batch_of_one():
    with pytest.raises(ValueError, match="B >= 2"):
        build_grid_content(torch.rand(1, 3, 16, 16))
