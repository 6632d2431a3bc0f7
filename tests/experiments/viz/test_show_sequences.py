"""``lmix show --dataset`` (sequences as strips and line plots) and ``lmix show --volume`` (slices of volumes)."""

from __future__ import annotations

import re
import sys

import matplotlib.image
import numpy as np
import pytest
import torch

import lmix.data.timeseries as ts
from lmix.experiments.viz import (
    build_sequence_content,
    build_volume_content,
    depth_slices,
    mix_every_method,
    sample_clip_batch,
    sample_sequence_batch,
)
from tests.cli_helpers import one_line_error, run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METHOD_ROWS = ["LMix", "FMix", "CutMix", "Mixup", "Cutout"]


@pytest.fixture
def fake_series(monkeypatch):
    """sktime's loader replaced by 15 series of length 50 in 3 classes (labels "1".."3", in turn 1, 1, 2, 2, 3, 3...)."""
    rng = np.random.default_rng(0)
    labels = np.array([str(1 + (i // 2) % 3) for i in range(15)])
    values = rng.normal(size=(15, 1, 50)) + labels.astype(float)[:, None, None]

    def load(*, split: str, return_type: str):
        assert return_type == "numpy3D"
        return values, labels

    monkeypatch.setattr(ts, "_sktime_loader", lambda name: load)
    return torch.as_tensor(values, dtype=torch.float32), labels


def _check_png(path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert 600 < pixels.shape[0] < 3000 and 600 < pixels.shape[1] < 3000, pixels.shape
    assert pixels.std() > 0.05  # not a blank canvas


def test_sample_sequence_batch_takes_the_classes_in_turn(fake_series):
    values, labels = fake_series
    batch = sample_sequence_batch("osuleaf", count=8)
    # First of each class (indices 0, 2, 4), then the second of each (1, 3, 5), then the third (6, 8).
    assert torch.equal(batch, values[[0, 2, 4, 1, 3, 5, 6, 8]])
    assert sample_sequence_batch("osuleaf", count=99).shape == (15, 1, 50)


def test_show_dataset_writes_a_png(tmp_path, capsys, fake_series):
    out = tmp_path / "seq.png"
    code, stdout, stderr = run_cli(capsys, ["show", "--dataset", "arrowhead", "--out", str(out), "--seed", "4"])
    assert code == 0, stderr
    assert stdout.strip() == f"wrote {out} (8 training series of arrowhead, length 50, seed 4)"
    _check_png(out)
    assert [p.name for p in tmp_path.iterdir()] == ["seq.png"]  # atomic: no temporary file left


@pytest.mark.parametrize("channels", [1, 2])
def test_sequence_content_titles_are_the_exact_lam_of_each_mix(channels):
    series = torch.randn(5, channels, 37, generator=torch.Generator().manual_seed(1))
    content = build_sequence_content(series, seed=3, show=3, ks=(0.0, 2.0))
    assert [label.split("\n")[0] for label, _ in content.rows] == METHOD_ROWS
    for (label, panels), (_, _, params, batch) in zip(content.rows, mix_every_method(series, seed=3)):
        assert len(panels) == 3
        for i, panel in enumerate(panels):
            assert panel.mask.shape == panel.own.shape == panel.mixed.shape == (37,)
            np.testing.assert_array_equal(panel.own, series[i, 0].numpy())  # channel 0 is plotted
            np.testing.assert_array_equal(panel.mixed, batch.images[i, 0].numpy())
            lam = float(batch.lam[i])
            if label.startswith("Mixup"):
                assert panel.title == f"#{i}+#{int(params.perm[i])}, λ={lam:.3f}"
                assert (panel.mask == lam).all()
                continue
            assert set(np.unique(panel.mask)) <= {0.0, 1.0}
            own = int(panel.mask.sum())
            if label.startswith("Cutout"):
                assert panel.title == f"#{i}, {37 - own}/37 steps zeroed" and panel.partner is None
                np.testing.assert_array_equal(panel.mixed, np.where(panel.mask > 0, panel.own, 0.0))
                continue
            j = int(params.perm[i])
            a, b, n, length, shown = re.fullmatch(r"#(\d+)\+#(\d+), λ=(\d+)/(\d+)=([0-9.]+)", panel.title).groups()
            assert (int(a), int(b), int(n), int(length)) == (i, j, own, 37) and i != j
            assert np.float32(own / 37) == np.float32(lam) and shown == f"{lam:.3f}"  # the title's lam is exact
            np.testing.assert_array_equal(panel.partner, series[j, 0].numpy())
            np.testing.assert_array_equal(panel.mixed, np.where(panel.mask > 0, panel.own, panel.partner))
    assert [label for label, _ in content.k_masks] == ["k=0 (FMix)", "k=2"]
    for _, mask in content.k_masks:
        assert mask.shape == (37,) and mask.sum() == round(0.5 * 37)
    assert ("one channel" if channels == 1 else "channel 0 of 2") in content.caption


@pytest.mark.parametrize("shape", [(1, 1, 20), (4, 20), (4, 1, 1)])
def test_sequence_content_refuses_other_shapes(shape):
    with pytest.raises(ValueError, match=r"\(B >= 2, C, L >= 2\)"):
        build_sequence_content(torch.zeros(shape))


def test_volume_content_shows_slices_of_one_3d_mask():
    volumes = sample_clip_batch(frames=6, size=16)
    assert volumes.shape == (2, 3, 6, 16, 16) and 0.0 <= float(volumes.min()) and float(volumes.max()) <= 1.0
    assert not torch.equal(volumes[0, :, 0], volumes[0, :, -1])  # the camera pans
    content = build_volume_content(volumes, seed=2)
    labels = [row.label.split("\n")[0] for row in content.rows]
    assert labels == ["volume #0", "volume #1", *METHOD_ROWS]
    slices = depth_slices(6)
    assert slices == [0, 1, 3, 4]
    mixes = mix_every_method(volumes, seed=2)
    for row, (_, _, params, batch) in zip(content.rows[2:], mixes):
        masks, mixed = row.panels[::2], row.panels[1::2]
        assert [p.title for p in masks] == [f"mask, depth {z}" for z in slices]
        for z, mask, image in zip(slices, masks, mixed):
            assert mask.pixels.shape == (16, 16) and image.pixels.shape == (16, 16, 3)
            np.testing.assert_allclose(image.pixels, batch.images[0, :, z].clamp(0, 1).permute(1, 2, 0).numpy())
        if params.mask is not None and not params.erase:  # the λ of the label is the 3-D mask's share
            lam = float(re.search(r"λ=([0-9.]+)", row.label)[1])
            assert lam == pytest.approx(float(params.mask[0].float().mean()), abs=5e-4)


def test_depth_slices():
    assert depth_slices(16) == [0, 4, 8, 12] and depth_slices(2) == [0, 1] and depth_slices(3) == [0, 1, 2]


def test_show_volume_writes_a_png(tmp_path, capsys):
    out = tmp_path / "vol.png"
    code, stdout, stderr = run_cli(capsys, ["show", "--volume", "--size", "16", "--out", str(out)])
    assert code == 0, stderr
    assert "2 volumes of 16x16x16" in stdout
    _check_png(out)


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--dataset", "digits"], ["--dataset takes a time-series data set (osuleaf, arrowhead)", "'digits'"]),
        (["--dataset", "osuleaf", "--size", "64"], ["--size", "sequence keeps its length"]),
        (["--dataset", "osuleaf", "--images", "x"], ["not allowed with argument"]),
        (["--volume", "--dataset", "osuleaf"], ["not allowed with argument"]),
        (["--volume", "--images", "x"], ["not allowed with argument"]),
        (["--volume", "--size", "4"], ["--size"]),
    ],
)
def test_show_sequence_and_volume_errors_are_one_line(tmp_path, capsys, argv, needles):
    out = tmp_path / "x.png"
    one_line_error(capsys, ["show", "--out", str(out), *argv], *needles)
    assert not out.exists()


def test_show_dataset_without_the_extra_names_it(tmp_path, capsys, monkeypatch):
    # As when sktime is not installed: its import fails at the top-level package.
    monkeypatch.delitem(sys.modules, "sktime.datasets", raising=False)
    monkeypatch.setitem(sys.modules, "sktime", None)
    out = tmp_path / "x.png"
    line = one_line_error(capsys, ["show", "--dataset", "osuleaf", "--out", str(out)], "'timeseries' extra")
    assert line == (
        "lmix show: the osuleaf data set needs the 'timeseries' extra (no module named 'sktime'): "
        "pip install -e '.[timeseries]' in a clone of lmix"
    )
    assert not out.exists()
