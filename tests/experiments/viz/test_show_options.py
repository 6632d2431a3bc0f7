"""``lmix show --max-soft/--reformulate``: soft edges and the reformulated lam in every figure (images,
sequences, volumes), applied to LMix and FMix only, with one-line errors for bad values."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmix.errors import LmixError
from lmix.experiments.viz import (
    build_grid_content,
    build_sequence_content,
    build_volume_content,
    check_mask_options,
    mix_every_method,
    sample_clip_batch,
)
from tests.cli_helpers import one_line_error, run_cli

FOURIER_ROWS = ("LMix", "FMix")


def _rows(content) -> dict[str, list]:
    return {row.label.split("\n")[0]: row for row in content.rows}


def _images(seed: int = 1, b: int = 5, side: int = 16) -> torch.Tensor:
    return torch.rand(b, 3, side, side, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=12, deadline=None)
@given(soft=st.sampled_from([0.05, 0.1, 0.25, 0.5]), seed=st.integers(0, 2**31 - 1))
def test_max_soft_softens_lmix_and_fmix_only(soft, seed):
    images = _images(seed % 97)
    plain = _rows(build_grid_content(images, seed=seed, show=3, ks=(0.0, 1.0), image_ks=(0.0,)))
    content = build_grid_content(
        images, seed=seed, show=3, ks=(0.0, 1.0), image_ks=(0.0,), mask_options={"max_soft": soft}
    )
    rows = _rows(content)
    for label, row in rows.items():
        if label in FOURIER_ROWS:
            assert f"max_soft={soft:g}" in row.label
            fractional = 0
            for mask, mixed in zip(row.panels[::2], row.panels[1::2]):
                assert 0.0 <= mask.pixels.min() and mask.pixels.max() <= 1.0
                fractional += int(((mask.pixels > 0) & (mask.pixels < 1)).sum())
                lam = float(re.fullmatch(r"#\d+\+#\d+, λ=([0-9.]+)", mixed.title)[1])
                assert abs(mask.pixels.mean() - lam) < 0.006  # the title's lam is still the soft mask's mean
            assert fractional > 0
        elif label in ("CutMix", "Mixup", "Cutout", "batch"):  # the other methods do not take the options
            for a, b in zip(row.panels, plain[label].panels):
                np.testing.assert_array_equal(a.pixels, b.pixels)
                assert a.title == b.title
    k_row = rows["LMix masks"]
    assert f"max_soft={soft:g}" in k_row.label
    for panel in k_row.panels:
        assert panel.pixels.astype(np.float64).sum() == 128  # soft weights sum exactly to round(0.5 * 256)
        assert ((panel.pixels > 0) & (panel.pixels < 1)).any()
    assert f"max_soft={soft:g}" in content.caption


def test_reformulate_titles_give_the_area_and_the_own_label():
    images = _images(3, b=6)
    content = build_grid_content(images, seed=4, show=4, ks=(1.0,), image_ks=(0.0,), mask_options={"reformulate": True})
    rows = _rows(content)
    for label in FOURIER_ROWS:
        assert "reformulate=True" in rows[label].label
        for mask, mixed in zip(rows[label].panels[::2], rows[label].panels[1::2]):
            a, b, area = re.fullmatch(r"#(\d+)\+#(\d+), area=([0-9.]+), λ=1", mixed.title).groups()
            assert a != b and abs(mask.pixels.mean() - float(area)) < 0.006
    assert re.fullmatch(r"#\d+\+#\d+, λ=[0-9.]+", rows["CutMix"].panels[1].title)  # unchanged elsewhere
    assert "Beta(α+1, α)" in content.caption
    # The mixers really are the reformulated ones: every LMix/FMix label share is 1.
    for label, mixer, _, batch in mix_every_method(images, seed=4, mask_options={"reformulate": True}):
        assert getattr(mixer, "reformulate", False) == (label in FOURIER_ROWS)
        if label in FOURIER_ROWS:
            assert torch.equal(batch.lam, torch.ones(6))


def test_sequence_and_volume_figures_take_the_options():
    series = torch.randn(5, 1, 41, generator=torch.Generator().manual_seed(2))
    options = {"max_soft": 0.1, "reformulate": True}
    content = build_sequence_content(series, seed=1, show=3, ks=(0.0, 2.0), mask_options=options)
    for label, panels in content.rows:
        name = label.split("\n")[0]
        for panel in panels:
            if name in FOURIER_ROWS:
                own, length = map(int, re.fullmatch(r"#\d+\+#\d+, area=(\d+)/(\d+), λ=1", panel.title).groups())
                assert length == 41 and own == round(float(panel.mask.sum()))
            elif name == "CutMix":
                assert re.fullmatch(r"#\d+\+#\d+, λ=\d+/41=[0-9.]+", panel.title)
    assert "max_soft=0.1" in content.k_title
    for _, mask in content.k_masks:
        assert mask.sum() == pytest.approx(round(0.5 * 41), abs=1e-4) and ((mask > 0) & (mask < 1)).any()

    volumes = sample_clip_batch(frames=4, size=16)
    rows = _rows(build_volume_content(volumes, seed=2, mask_options=options))
    for name in FOURIER_ROWS:
        area = float(re.search(r"area=([0-9.]+), λ=1", rows[name].label)[1])
        masks = np.stack([p.pixels for p in rows[name].panels[::2]])
        assert ((masks > 0) & (masks < 1)).any() and 0.0 < area < 1.0


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"max_soft": 0.6}, "max_soft must be a number in [0, 0.5]"),
        ({"max_soft": float("nan")}, "max_soft must be a number in [0, 0.5]"),
        ({"max_soft": "0.1"}, "max_soft must be a number in [0, 0.5]"),
        ({"reformulate": 1}, "reformulate must be True or False"),
        ({"soft": 0.1}, "unknown mask option(s) ['soft']"),
    ],
)
def test_bad_mask_options_are_refused(options, needle):
    with pytest.raises(LmixError) as err:
        check_mask_options(options)
    assert needle in str(err.value)


def test_show_with_the_options_writes_a_png_and_says_so(tmp_path, capsys):
    out = tmp_path / "soft.png"
    argv = ["show", "--out", str(out), "--size", "24", "--max-soft", "0.1", "--reformulate"]
    code, stdout, stderr = run_cli(capsys, argv)
    assert code == 0, stderr
    assert "LMix/FMix max_soft=0.1 reformulate" in stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("value", ["0.7", "-0.1", "nan", "inf", "x", ""])
def test_show_bad_max_soft_is_one_line_exit_2(tmp_path, capsys, value):
    out = tmp_path / "x.png"
    one_line_error(capsys, ["show", "--out", str(out), "--max-soft", value], "--max-soft")
    assert not out.exists()


def _readme_show_lines() -> list[list[str]]:
    """The ``lmix show`` command lines of the README's "Seeing it" block (without placeholder paths)."""
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    block = text.split("## Seeing it", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines = [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.startswith("lmix show")]
    return [argv[1:] for argv in lines if not any("path/to" in a for a in argv)]


@pytest.mark.parametrize("argv", _readme_show_lines(), ids=lambda argv: " ".join(argv))
def test_readme_show_lines_run(tmp_path, capsys, monkeypatch, argv):
    if "--dataset" in argv:
        pytest.importorskip("sktime")
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli(capsys, argv)
    assert code == 0, stderr
    out = tmp_path / argv[argv.index("--out") + 1]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(out.name) in stdout


def test_readme_shows_the_options():
    assert any("--max-soft" in argv and "--reformulate" in argv for argv in _readme_show_lines())
