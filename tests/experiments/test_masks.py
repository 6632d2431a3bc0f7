"""lmix masks: connected components and boundary share on hand-made masks, the study, the command."""

from __future__ import annotations

import json

import pytest
import torch

import lmix
from lmix.experiments.cli import main
from lmix.experiments.masks import (
    boundary_share,
    connected_components,
    cutmix_masks,
    mask_statistics,
    radial_power,
    render_mask_study,
    run_mask_study,
    table_lines,
)
from tests.cli_helpers import one_line_error

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _mask(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[c == "#" for c in row] for row in rows])


CHECKER = _mask(["#.#.", ".#.#", "#.#.", ".#.#"])
TWO_BLOBS = _mask(["##....", "##....", "....##", "....##"])
RING = _mask(["#####", "#...#", "#.#.#", "#...#", "#####"])  # ring with an island inside its hole
DIAGONAL = _mask(["#..", ".#.", "..#"])  # touching corners only: 3 regions under 4-connectivity
SNAKE = _mask(["#####", "....#", "#####", "#....", "#####"])  # one long region


@pytest.mark.parametrize(
    ("mask", "regions", "largest", "complement_regions", "complement_largest"),
    [
        (CHECKER, 8, 1, 8, 1),
        (TWO_BLOBS, 2, 4, 1, 16),
        (RING, 2, 16, 1, 8),  # complement: the hole's 8 pixels around the island, one region
        (DIAGONAL, 3, 1, 2, 3),
        (SNAKE, 1, 17, 2, 4),
    ],
)
def test_connected_components_on_hand_made_masks(mask, regions, largest, complement_regions, complement_largest):
    count, big = connected_components(mask[None])
    assert count.tolist() == [regions] and big.tolist() == [largest]
    count, big = connected_components(~mask[None])
    assert count.tolist() == [complement_regions] and big.tolist() == [complement_largest]


def test_connected_components_batch_does_not_join_masks():
    # the same column of ones in every mask: one region per mask, not one through the batch
    masks = torch.zeros(4, 3, 3, dtype=torch.bool)
    masks[:, :, 1] = True
    masks[3] = False  # an empty mask
    count, big = connected_components(masks)
    assert count.tolist() == [1, 1, 1, 0] and big.tolist() == [3, 3, 3, 0]
    with pytest.raises(ValueError, match="bool tensor of shape"):
        connected_components(masks.float())


def test_connected_components_match_a_reference_on_random_masks():
    ndimage = pytest.importorskip("scipy.ndimage")
    masks = torch.rand(50, 9, 7, generator=torch.Generator().manual_seed(0)) < 0.5
    count, big = connected_components(masks)
    for m, c, b in zip(masks.numpy(), count.tolist(), big.tolist()):
        labels, num = ndimage.label(m)  # default structure: 4-connectivity in 2-D
        assert c == num and b == (max((labels == i).sum() for i in range(1, num + 1)) if num else 0)


def test_boundary_share_exact():
    # 4x4 checkerboard: every one of the 2 * 4 * 3 = 24 pairs differs
    assert boundary_share(CHECKER[None]).tolist() == [1.0]
    # two blobs in 4x6: pairs = 4*5 + 3*6 = 38; differing: 2 per blob row (right edge of the left
    # blob, left edge of the right one) = 4, and 2 + 2 vertical ones between rows 1 and 2 -> 8
    assert boundary_share(TWO_BLOBS[None]).tolist() == [8 / 38]
    half = torch.zeros(1, 2, 2, dtype=torch.bool)
    half[0, :, 0] = True  # left column: 2 of the 4 pairs differ
    assert boundary_share(half).tolist() == [0.5]
    assert boundary_share(torch.ones(1, 3, 3, dtype=torch.bool)).tolist() == [0.0]


def test_radial_power():
    power, high = radial_power(torch.ones(2, 8, 8, dtype=torch.bool))
    assert power.shape == (2, 5) and power.sum() == 0 and high.tolist() == [0.0, 0.0]  # constant: no power
    stripes = torch.zeros(1, 8, 8, dtype=torch.bool)
    stripes[:, :, ::2] = True  # 4 cycles per image along x: everything at radius 4 (0.5 cycles/pixel)
    power, high = radial_power(stripes)
    assert power[0, 4] == pytest.approx(power.sum().item()) and high.item() == pytest.approx(1.0)
    blocks = torch.zeros(1, 8, 8, dtype=torch.bool)
    blocks[:, :, :4] = True  # one cycle per image: all power at radius 1, below the cutoff
    power, high = radial_power(blocks)
    assert power[0, 1] / power.sum() > 0.8 and high.item() < 0.2


def test_cutmix_masks_are_one_box():
    masks, kept = cutmix_masks(torch.full((64,), 0.5), (16, 16), generator=torch.Generator().manual_seed(1))
    masks = masks[:, 0].bool()
    assert torch.equal(kept, masks.float().mean(dim=(1, 2)))  # the kept area, as CutMix's lam
    stats = mask_statistics(masks)
    assert (stats["complement_regions"] == 1).all() and (stats["regions"] == 1).all()
    assert (stats["largest_complement"] <= 0.5 + 1e-9).all()  # the box: int(16 * sqrt(0.5))^2 / 256 at most


def test_study_more_regions_and_boundary_with_k():
    study = run_mask_study(size=(16, 16), ks=[0, 4], lams=[0.3, 0.5], n=200, seed=0)
    assert [(r.label, r.lam) for r in study.rows] == [
        (label, lam) for lam in (0.3, 0.5) for label in ("CutMix", "FMix (k=0)", "LMix k=4")
    ]
    for lam in (0.3, 0.5):
        fmix, lmix = (next(r for r in study.rows if r.lam == lam and r.k == k) for k in (0.0, 4.0))
        assert lmix.stats["boundary"].mean > fmix.stats["boundary"].mean
        assert lmix.stats["high_freq"].mean > fmix.stats["high_freq"].mean
        assert sum(fmix.spectrum) == pytest.approx(1.0) and fmix.stats["regions"].n == 200
    again = run_mask_study(size=(16, 16), ks=[0, 4], lams=[0.3, 0.5], n=200, seed=0)
    assert [r.values for r in again.rows] == [r.values for r in study.rows]  # seeded
    with pytest.raises(ValueError, match="lam must be"):
        run_mask_study(lams=[1.0], n=2)


def test_kept_area_is_the_area_the_masks_keep():
    """The table shows what each mask keeps, not only the lam asked: a clipped CutMix box keeps more."""
    study = run_mask_study(size=(32, 32), ks=[1], lams=[0.3, 0.5], n=1000, seed=0)
    for r in study.rows:
        exact = round(r.lam * 32 * 32) / (32 * 32)
        if r.method == "cutmix":
            assert r.kept.mean > r.lam + 0.1
        else:  # a Fourier mask keeps exactly round(lam H W) pixels
            assert r.kept.mean == pytest.approx(exact, abs=1e-12) and r.kept.std == 0
    cut = next(r for r in study.rows if r.method == "cutmix" and r.lam == 0.5)
    assert 0.66 < cut.kept.mean < 0.70  # "about 0.68" in the module's and docs/masks.md's text
    lines = table_lines(study)
    assert lines[0].startswith("| masks | lam asked | kept area | regions (mask) |")
    row = next(line for line in lines if line.startswith("| CutMix | 0.5 |"))
    assert row.split(" | ")[2].startswith(f"{cut.kept.mean:.3f} [")
    # The CutMix mixer reports the same kept area as its lam, mask for mask.
    mixer = lmix.create_mixer("cutmix", seed=3)
    batch = mixer(torch.zeros(256, 1, 32, 32), torch.zeros(256, dtype=torch.long))
    assert torch.equal(batch.lam, batch.params.mask.float().mean(dim=(1, 2, 3)))


def test_render_mask_study():
    study = run_mask_study(size=(8, 8), ks=[1], n=5, seed=0)
    text = render_mask_study(study)
    assert text.startswith("# lmix masks\n\n5 masks per row, 8x8, decay 3, seed 0 ")
    assert "| LMix k=1 | 0.5 | 0.500 " in text and "- boundary share:" in text and "- kept area:" in text


def test_help_shows_percent_signs_once(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["masks", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(mean and 95% CI)" in text and "%%" not in text


def test_command_writes_files(capsys, tmp_path):
    out = tmp_path / "m"
    assert main(["masks", "--size", "12", "10", "--k", "0,2", "--n", "50", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        "| CutMix | 0.5 | 0." in printed and "| LMix k=2 | 0.5 | 0.500 " in printed and "50 masks of 12x10" in printed
    )
    data = json.loads((out / "masks.json").read_text())
    assert [r["label"] for r in data["rows"]] == ["CutMix", "FMix (k=0)", "LMix k=2"]
    assert data["rows"][2]["stats"]["regions"]["n"] == 50 and data["size"] == [12, 10]
    assert data["rows"][0]["kept_area"]["mean"] > 0.5 and data["rows"][1]["kept_area"]["mean"] == 0.5
    assert "| masks | lam asked | kept area | regions (mask) |" in (out / "masks.md").read_text()
    for name in ("fig_mask_statistics.png", "fig_mask_spectra.png", "fig_mask_examples.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["masks.md", "masks.json", "fig_mask_statistics.png", "fig_mask_spectra.png", "fig_mask_examples.png"]
    )  # atomic writes leave no temporary files


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--k", "1,-2"], "--k values must be >= 0"),
        (["--k", "one"], "comma-separated numbers"),
        (["--lam", "0"], "(0, 1)"),
        (["--size", "1", "8"], "--size"),
        (["--n", "1"], "--n must be >= 2"),
        (["--decay", "-1"], "--decay"),
        (["--seed", "-1"], "--seed"),
        (["--size", "8"], "--size"),
    ],
)
def test_bad_arguments_are_one_line(capsys, tmp_path, argv, needle):
    one_line_error(capsys, ["masks", "--out", str(tmp_path / "x"), *argv], needle)
    assert not (tmp_path / "x").exists()
