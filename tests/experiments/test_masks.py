"""lmix masks: connected components and boundary share on hand-made masks, the study, the command.

Masks are 1-D (sequences), 2-D (images) or 3-D (volumes); regions are face-connected (runs in 1-D,
4-connectivity in 2-D, 6-connectivity in 3-D) and the boundary counts the same neighbour pairs.
"""

from __future__ import annotations

import itertools
import json
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lmix
import lmix.experiments.masks as masks_module
from lmix.experiments import mask_limits
from lmix.experiments.cli import main
from lmix.experiments.mask_limits import limit_problem
from lmix.experiments.masks import (
    boundary_share,
    clipped_note,
    connected_components,
    cutmix_masks,
    interval,
    mask_statistics,
    radial_power,
    render_mask_study,
    run_mask_study,
    statistics,
    table_lines,
    write_study,
)
from lmix.experiments.report.cells import Stats
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


def _strip(text: str) -> torch.Tensor:
    return torch.tensor([c == "1" for c in text])


@pytest.mark.parametrize(
    ("mask", "regions", "largest", "complement_regions", "complement_largest", "differing"),
    [
        ("0011100110", 2, 3, 3, 2, 4),  # runs of ones: 2..4 and 7..8; of zeros: 0..1, 5..6, 9
        ("1111111111", 1, 10, 0, 0, 0),
        ("1010101010", 5, 1, 5, 1, 9),
        ("1000000001", 2, 1, 1, 8, 2),  # no wrap-around: the two ends are two runs
        ("01", 1, 1, 1, 1, 1),
    ],
)
def test_runs_of_1d_masks(mask, regions, largest, complement_regions, complement_largest, differing):
    """In 1-D a region is a run (a maximal segment of equal values); the boundary counts the L - 1 pairs."""
    m = _strip(mask)[None]
    assert [t.tolist() for t in connected_components(m)] == [[regions], [largest]]
    assert [t.tolist() for t in connected_components(~m)] == [[complement_regions], [complement_largest]]
    assert boundary_share(m).tolist() == [differing / (len(mask) - 1)]
    stats = mask_statistics(m)
    assert stats["regions"].tolist() == [regions] and stats["largest"].tolist() == [largest / len(mask)]


def test_face_connectivity_in_3d():
    """Voxels are neighbours when they share a face: touching edges or corners do not join regions."""
    masks = torch.zeros(4, 3, 3, 3, dtype=torch.bool)
    masks[0, :, 1, 1] = True  # a column along depth: one region of 3
    masks[1, 0, 0, 0] = masks[1, 1, 1, 1] = masks[1, 2, 2, 2] = True  # corners only: 3 regions
    masks[2, 0, 0, 0] = masks[2, 0, 1, 1] = True  # an edge only: 2 regions
    masks[3, 0, 0, 0] = masks[3, 1, 0, 0] = masks[3, 1, 1, 0] = masks[3, 1, 1, 1] = True  # a staircase of faces: 1
    count, big = connected_components(masks)
    assert count.tolist() == [1, 3, 2, 1] and big.tolist() == [3, 1, 1, 4]
    # The complement of the column is one region (around it); of the corner diagonal too.
    assert connected_components(~masks)[0].tolist() == [1, 1, 1, 1]
    one = torch.zeros(1, 2, 2, 2, dtype=torch.bool)
    one[0, 0, 0, 0] = True  # 3 of the 3 * 4 = 12 face pairs of a 2x2x2 cube differ
    assert boundary_share(one).tolist() == [3 / 12]
    layers = torch.zeros(1, 4, 2, 3, dtype=torch.bool)
    layers[0, ::2] = True  # alternate depth layers: every depth pair differs, no other pair
    pairs = 3 * 2 * 3 + 4 * 1 * 3 + 4 * 2 * 2  # (D-1)HW + D(H-1)W + DH(W-1) = 18 + 12 + 16
    assert boundary_share(layers).tolist() == [18 / pairs]
    assert connected_components(layers)[0].tolist() == [2]


def _components_by_search(mask: torch.Tensor) -> tuple[int, int]:
    """(count, largest) face-connected components of one N-D bool mask, by breadth-first search."""
    shape = mask.shape
    todo = {index for index in itertools.product(*map(range, shape)) if mask[index]}
    sizes = []
    while todo:
        queue = [todo.pop()]
        size = 0
        while queue:
            index = queue.pop()
            size += 1
            for axis, step in itertools.product(range(len(shape)), (-1, 1)):
                near = index[:axis] + (index[axis] + step,) + index[axis + 1 :]
                if near in todo:
                    todo.remove(near)
                    queue.append(near)
        sizes.append(size)
    return len(sizes), max(sizes, default=0)


def _boundary_by_pairs(mask: torch.Tensor) -> float:
    """Share of face-neighbour pairs whose values differ, pair by pair."""
    shape = mask.shape
    differ = pairs = 0
    for index in itertools.product(*map(range, shape)):
        for axis in range(len(shape)):
            if index[axis] + 1 < shape[axis]:
                near = index[:axis] + (index[axis] + 1,) + index[axis + 1 :]
                pairs += 1
                differ += bool(mask[index] != mask[near])
    return differ / pairs


@settings(max_examples=60, deadline=None)
@given(
    shape=st.sampled_from([(2,), (7,), (16,), (3, 5), (6, 4), (2, 2, 2), (3, 4, 5), (4, 3, 2)]),
    batch=st.integers(1, 4),
    density=st.floats(0.1, 0.9),
    seed=st.integers(0, 2**31 - 1),
)
def test_statistics_match_a_search_on_random_masks(shape, batch, density, seed):
    """Regions, largest region and boundary of random 1-D, 2-D and 3-D masks, against a plain search."""
    masks = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(seed)) < density
    count, big = connected_components(masks)
    comp_count, comp_big = connected_components(~masks)
    share = boundary_share(masks)
    for i, mask in enumerate(masks):
        assert (count[i].item(), big[i].item()) == _components_by_search(mask)
        assert (comp_count[i].item(), comp_big[i].item()) == _components_by_search(~mask)
        assert share[i].item() == pytest.approx(_boundary_by_pairs(mask), abs=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), ()])
def test_measurements_refuse_other_ranks(shape):
    masks = torch.zeros(3, *shape, dtype=torch.bool)
    for measure in (connected_components, boundary_share, radial_power, mask_statistics):
        with pytest.raises(ValueError, match=r"\(B, L\), \(B, H, W\) or \(B, D, H, W\)"):
            measure(masks)


def test_connected_components_batch_does_not_join_masks():
    # the same column of ones in every mask: one region per mask, not one through the batch
    masks = torch.zeros(4, 3, 3, dtype=torch.bool)
    masks[:, :, 1] = True
    masks[3] = False  # an empty mask
    count, big = connected_components(masks)
    assert count.tolist() == [1, 1, 1, 0] and big.tolist() == [3, 3, 3, 0]
    with pytest.raises(ValueError, match="bool tensor of shape"):
        connected_components(masks.float())
    # A batch without a single false pixel has no background label: each mask is still one region.
    assert [t.tolist() for t in connected_components(torch.ones(2, 3, 3, dtype=torch.bool))] == [[1, 1], [9, 9]]


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


def test_radial_power_in_1d_and_3d():
    stripes = torch.zeros(1, 16, dtype=torch.bool)
    stripes[:, ::2] = True  # 8 cycles per sequence: the Nyquist bin, 0.5 cycles per step
    power, high = radial_power(stripes)
    assert power.shape == (1, 9) and power[0, 8] == pytest.approx(power.sum().item()) and high.item() == 1.0
    half = torch.zeros(1, 16, dtype=torch.bool)
    half[:, :8] = True  # one cycle per sequence, below the cutoff; a square wave has odd harmonics only
    power, high = radial_power(half)
    assert power[0, 1] / power.sum() > 0.8 and power[0, 2::2].sum() < 1e-20 and high.item() < 0.2
    layers = torch.zeros(1, 8, 4, 6, dtype=torch.bool)
    layers[:, ::2] = True  # alternate depth layers: radius round(0.5 * max(size)) = 4
    power, high = radial_power(layers)
    assert power.shape == (1, 5) and power[0, 4] == pytest.approx(power.sum().item()) and high.item() == 1.0
    # Parseval: the power of the mean-removed mask, in all bins (none beyond the Nyquist sphere here).
    x = layers.double() - layers.double().mean()
    assert power.sum().item() == pytest.approx(x.square().sum().item() * x.numel())


@pytest.mark.parametrize("size", [(40,), (12, 16), (6, 8, 10)])
def test_cutmix_masks_keep_what_is_outside_one_box(size):
    """A CutMix box (segment, rectangle, cuboid) holds int(n (1 - lam) ** (1 / d)) elements per axis unclipped."""
    d, lam = len(size), 0.5  # exact in float32, as the mixers hold lam
    masks, kept = cutmix_masks(torch.full((200,), lam), size, generator=torch.Generator().manual_seed(2))
    masks = masks[:, 0].bool()
    assert torch.equal(kept, masks.float().mean(dim=tuple(range(1, d + 1))))
    cut = (~masks).flatten(1).sum(1)  # elements in the clipped box
    unclipped = math.prod(int(n * (1 - lam) ** (1 / d)) for n in size)
    assert cut.max().item() == unclipped and (cut <= unclipped).all()
    assert (connected_components(~masks)[0] <= 1).all()  # one box (or none, clipped away)


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


@pytest.mark.parametrize("seed", [-1, 2**64, 2**100, 1.5, True])
def test_a_seed_the_generator_cannot_take_is_refused_up_front(seed):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*64\)"):
        run_mask_study(size=(8, 8), ks=[0], lams=[0.5], n=2, seed=seed)
    run_mask_study(size=(8, 8), ks=[0], lams=[0.5], n=2, seed=2**64 - 1)  # the largest works


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


@pytest.mark.parametrize("size", [(64,), (6, 10, 8)])
def test_study_of_sequences_and_volumes(size):
    study = run_mask_study(size=size, ks=[0, 4], n=60, seed=0)
    numel = math.prod(size)
    assert study.dims == len(size) and [r.label for r in study.rows] == ["CutMix", "FMix (k=0)", "LMix k=4"]
    cut, fmix, lmix_ = study.rows
    for r in (fmix, lmix_):  # a Fourier mask keeps round(lam N) elements exactly
        assert r.kept.mean == pytest.approx(round(0.5 * numel) / numel, abs=1e-12) and r.kept.std == 0
        assert sum(r.spectrum) == pytest.approx(1.0) and len(r.spectrum) == max(size) // 2 + 1
    assert lmix_.stats["boundary"].mean > fmix.stats["boundary"].mean
    assert lmix_.stats["high_freq"].mean > fmix.stats["high_freq"].mean
    assert cut.stats["complement_regions"].mean <= 1  # one box
    text = render_mask_study(study)
    if len(size) == 1:
        assert "60 masks per row, length 64," in text and "- regions (mask): runs of ones" in text
        assert "its segment is clipped" in text
    else:
        assert "60 masks per row, 6x10x8," in text and "(6-connectivity: voxels that share a face)" in text
        assert "its cuboid is clipped" in text and "cycles/voxel" in text


def test_statistics_wording_is_that_of_images_in_2d():
    """The 2-D wording is unchanged: what masks.md and masks.json said before sequences and volumes."""
    assert statistics(2)["regions"][1] == "connected regions of the mask's ones (4-connectivity)"
    assert statistics(2)["boundary"][1] == "share of 4-neighbour pixel pairs that differ"
    assert [h for h, _ in statistics(1).values()] == [h for h, _ in statistics(3).values()]


@pytest.mark.parametrize("size", [(1,), (8, 1), (2, 2, 2, 2), (), "32", (3.0, 4)])
def test_study_refuses_bad_sizes(size):
    with pytest.raises(ValueError, match="size must be 1 to 3 integers >= 2"):
        run_mask_study(size=size, n=2)


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
    assert "(mean and 95% CI, clipped" in text and "%%" not in text


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
    ("size", "shown", "words"),
    [(["48"], "length 48", "runs of ones"), (["5", "8", "6"], "5x8x6", "6-connectivity")],
)
def test_command_on_sequences_and_volumes(capsys, tmp_path, size, shown, words):
    out = tmp_path / "m"
    assert main(["masks", "--size", *size, "--k", "0,2", "--n", "20", "--out", str(out)]) == 0
    assert f"20 masks of {shown} per row" in capsys.readouterr().out
    data = json.loads((out / "masks.json").read_text())
    assert data["size"] == [int(s) for s in size] and words in data["statistics"]["regions"]
    for name in ("fig_mask_statistics.png", "fig_mask_spectra.png", "fig_mask_examples.png"):
        png = (out / name).read_bytes()
        assert png[:8] == PNG_MAGIC and len(png) > 5000


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--k", "1,-2"], "--k values must be >= 0"),
        (["--k", "one"], "comma-separated numbers"),
        (["--lam", "0"], "(0, 1)"),
        (["--size", "1", "8"], "--size sides must all be >= 2"),
        (["--size", "1"], "--size sides must all be >= 2"),
        (["--size", "8", "8", "8", "8"], "--size takes 1 to 3 sides (L, H W or D H W), got 4"),
        (["--size", "8", "x"], "--size"),
        (["--size"], "--size"),
        (["--n", "1"], "--n must be >= 2"),
        (["--decay", "-1"], "--decay"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_bad_arguments_are_one_line(capsys, tmp_path, argv, needle):
    one_line_error(capsys, ["masks", "--out", str(tmp_path / "x"), *argv], needle)
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------
# limits, clipped intervals, the spectrum figure's radii, all-or-none writes
# ---------------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(
    size=st.lists(st.integers(2, 1 << 18), min_size=1, max_size=3),
    n=st.integers(2, 200_000),
    rows=st.integers(2, 40),
)
def test_limits_and_the_advice_they_give(size, n, rows):
    """A study is refused exactly past one of the five limits, and "--n at most M" is the largest n that runs."""
    numel = math.prod(size)
    at_once = max(n, mask_limits.EXAMPLE_MASKS if len(size) < 3 else 1) * numel
    fits = (
        n <= mask_limits.MAX_N
        and rows <= mask_limits.MAX_CONFIGURATIONS
        and max(size) <= mask_limits.MAX_SIDE
        and at_once <= mask_limits.MAX_AT_ONCE
        and rows * at_once <= mask_limits.MAX_IN_ALL
    )
    problem = limit_problem(size, n, rows, size_name="--size", n_name="--n")
    assert (problem is None) == fits
    if problem is None:
        return
    assert "\n" not in problem and "at most" in problem
    advice = re.search(r"--n at most ([\d,]+) with this size", problem)
    if advice:
        most = int(advice.group(1).replace(",", ""))
        assert limit_problem(size, most, rows) is None and limit_problem(size, most + 1, rows) is not None


def test_study_refuses_what_is_too_large_before_drawing(monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("a mask was drawn")

    monkeypatch.setattr(masks_module, "_draw", started)
    with pytest.raises(ValueError, match=r"n at most 95 with this size and 7 configurations"):
        run_mask_study(size=(1024, 1024), n=1000)
    with pytest.raises(ValueError, match="every side must be at most"):
        run_mask_study(size=(10_000_000,), ks=[0], n=2)
    with pytest.raises(ValueError, match="at most 32 configurations"):
        run_mask_study(size=(8, 8), ks=range(40), n=2)


_BOUNDS = {"kept_area": (0, 1), "regions": (0, math.inf), "complement_regions": (0, math.inf)}


@pytest.mark.parametrize(("size", "n"), [((32, 32), 2), ((32, 32), 3), ((40,), 2), ((6, 8, 10), 2)])
def test_intervals_stay_within_what_each_statistic_can_take(capsys, tmp_path, size, n):
    """At small n, mean +- t s / sqrt(n) leaves [0, 1] (shares) or goes below 0 (counts): it is clipped, and said."""
    out = tmp_path / "m"
    argv = ["masks", "--size", *map(str, size), "--n", str(n), "--k", "0,1", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("| ") and "[" in line]
    columns = ["kept_area", *statistics(len(size))]
    for line in table:
        cells = line.strip("| ").split(" | ")[2:]
        for name, cell in zip(columns, cells):
            mean, low, high = map(float, re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", cell).groups())
            lo, hi = _BOUNDS.get(name, (0, 1))
            assert lo <= low <= mean <= high <= hi, (name, cell)
    note = "intervals reach beyond what their statistic can take and are clipped to it"
    assert note in printed and note in (out / "masks.md").read_text()


def test_no_note_where_no_interval_is_clipped():
    study = run_mask_study(size=(16, 16), ks=[0, 4], n=200, seed=0)
    assert clipped_note(study) is None and "clipped to it" not in render_mask_study(study)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(["kept_area", "regions", "boundary", "largest", "high_freq"]),
    mean=st.floats(0, 1),
    ci95=st.floats(0, 5),
)
def test_interval_and_error_bar_are_clipped_alike(name, mean, ci95):
    s = Stats(mean, 1.0, 2, ci95)
    low, high, clipped = interval(s, name)
    lo, hi = _BOUNDS.get(name, (0, 1))
    assert lo <= low <= mean <= high <= hi
    assert clipped == (mean - ci95 < lo or mean + ci95 > hi)
    if not clipped:
        assert (low, high) == (mean - ci95, mean + ci95)
    down, up = masks_module._bar(s, name)
    assert down == pytest.approx(mean - low, abs=1e-12) and up == pytest.approx(high - mean, abs=1e-12)
    if not clipped:
        assert down == up == ci95  # the bars of intervals inside the range, as they were


@given(bins=st.integers(2, 1 << 17))
def test_spectrum_figure_draws_every_radius_or_a_thousand_log_spaced(bins):
    radii = masks_module._plotted_radii(bins)
    assert radii[0] == 1 and radii[-1] == bins - 1 and radii == sorted(set(radii))
    if bins - 1 <= masks_module.PLOTTED_RADII:
        assert radii == list(range(1, bins))
    else:
        assert len(radii) <= masks_module.PLOTTED_RADII
        assert radii[:50] == list(range(1, 51))  # every low radius, where the log axis spreads them


def test_write_study_with_a_folder_in_the_way_changes_nothing(tmp_path):
    """Found only when the files are moved into place: nothing is replaced, no temporary folder stays."""
    study = run_mask_study(size=(8, 8), ks=[0], n=2, seed=0)
    out = tmp_path / "m"
    write_study(study, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "masks.json").unlink()
    (out / "masks.json").mkdir()
    del before["masks.json"]
    again = run_mask_study(size=(8, 8), ks=[0], n=2, seed=1)
    with pytest.raises(OSError, match=r"masks.json.*is a folder") as info:
        write_study(again, out)
    assert "\n" not in str(info.value)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"] and sorted(p.name for p in out.iterdir()) == sorted(
        [*before, "masks.json"]
    )
