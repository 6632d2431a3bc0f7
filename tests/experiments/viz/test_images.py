"""The images ``lmix show --images`` mixes: an image of any shape costs only its centre square, and
one that Pillow refuses for its size is one line naming it, as in training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from lmix.experiments.viz import load_image_folder
from tests.cli_helpers import one_line_error, run_cli
from tests.data import fakes

MODES = ["RGB", "L", "1", "P", "RGBA", "LA"]

# (width, height): tiny and near square, thin strips both ways, and anything in between
SIDES = st.one_of(
    st.tuples(st.integers(1, 40), st.integers(1, 40)),
    st.tuples(st.integers(1, 4), st.integers(1000, 20000)),
    st.tuples(st.integers(1000, 20000), st.integers(1, 4)),
    st.tuples(st.integers(1, 700), st.integers(1, 700)),
)


def _centre_white(width: int, height: int, mode: str) -> Image.Image:
    """A black image whose centre square (TF.center_crop's offsets) is white."""
    side = min(width, height)
    left, top = round((width - side) / 2), round((height - side) / 2)
    image = Image.new("RGB", (width, height), (0, 0, 0))
    image.paste((255, 255, 255), (left, top, left + side, top + side))
    return image.convert(mode)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sides=SIDES, mode=st.sampled_from(MODES), size=st.sampled_from([16, 50, 128, 1024]))
def test_an_image_of_any_shape_is_its_centre_square_and_costs_no_more(tmp_path_factory, monkeypatch, sides, mode, size):
    """Only the centre square is resized (a 20000x1 strip at 1024 once made a 62 GB image), and nothing
    outside it shows: the white centre square fills the whole result."""
    folder = tmp_path_factory.mktemp("imgs")
    _centre_white(*sides, mode).save(folder / "odd.png")
    resize = TF.resize

    def square_only(image: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        assert image.shape[-2] == image.shape[-1] == min(sides), f"resized {tuple(image.shape)} of a {sides} image"
        return resize(image, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(TF, "resize", square_only)
        batch = load_image_folder(folder, size=size)
    assert batch.shape == (1, 3, size, size) and batch.dtype == torch.float32
    assert float(batch.min()) == 1.0, f"{float(batch.min())}: the sides of a {sides} image leak in"


@pytest.mark.parametrize("side", [1, 7, 64, 300])
@pytest.mark.parametrize("size", [16, 128])
def test_a_square_image_gives_what_it_gave_before(tmp_path, side, size):
    """Square images (and so the sample photos' square crops) are unchanged: the short side resized."""
    pixels = torch.randint(0, 256, (3, side, side), generator=torch.Generator().manual_seed(side), dtype=torch.uint8)
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(tmp_path / "sq.png")
    expected = TF.center_crop(TF.resize(pixels, [size], antialias=True), [size, size]).float() / 255.0
    assert torch.equal(load_image_folder(tmp_path, size=size)[0], expected)


def _show(capsys, folder: Path, out: Path) -> tuple[int, str, str]:
    return run_cli(capsys, ["show", "--size", "16", "--images", str(folder), "--out", str(out)])


def _folder_with(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(folder / "a.png")  # under fakes.PIXEL_LIMIT
    return folder


@pytest.mark.parametrize("sides", fakes.REFUSED_SIDES + fakes.HUGE_SIDES, ids=str)
def test_an_image_over_pillows_limit_is_one_line_naming_it(tmp_path, capsys, monkeypatch, sides):
    folder = _folder_with(tmp_path)
    bad = folder / "b.png"
    if sides in fakes.HUGE_SIDES:  # Pillow's own limit
        fakes.write_png_claiming(bad, *sides)
    else:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", fakes.PIXEL_LIMIT)
        Image.new("RGB", sides).save(bad)
    out = tmp_path / "mix.png"
    line = one_line_error(capsys, ["show", "--size", "16", "--images", str(folder), "--out", str(out)])
    pixels = sides[0] * sides[1]
    assert f"lmix show: --images: image file {str(bad)!r} cannot be read ({pixels} pixels" in line, line
    assert "Pillow" in line and "shrink it" in line, line
    assert not out.exists()


@pytest.mark.parametrize("sides", fakes.WARNED_SIDES, ids=str)
def test_an_image_pillow_warns_about_is_read(tmp_path, capsys, monkeypatch, sides):
    """Between MAX_IMAGE_PIXELS and twice it, Pillow warns and the image is mixed, as in training."""
    folder = _folder_with(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", fakes.PIXEL_LIMIT)
    Image.new("RGB", sides, (10, 200, 10)).save(folder / "b.png")
    out = tmp_path / "mix.png"
    with pytest.warns(Image.DecompressionBombWarning):
        code, stdout, stderr = _show(capsys, folder, out)
    assert code == 0 and "2 images" in stdout and out.is_file(), stderr
