"""MixChoice with mode="sample": one component per sample, drawn for its own samples only, shared partners."""

from __future__ import annotations

import pytest
import torch

import lmix
from lmix.mixing import ChoiceParams, MixParams
from tests.mixing._util import constant_images

CPU = torch.device("cpu")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def component_outputs(choice: lmix.MixChoice, images, labels, params: ChoiceParams) -> dict[int, lmix.MixedBatch]:
    """Per sample, its component's own ``apply`` with the component's parameters and the shared partner.

    Every component mixes a batch of its own samples followed by their partners (partner of row k
    is row n + k), so the reference is the component's ``apply`` itself, row by row.
    """
    out = {}
    for mixer, cp, rows in zip(choice.mixers, params.components, params.rows, strict=True):
        if cp is None:
            continue
        n = rows.shape[0]
        sub = torch.cat([images[rows], images[params.perm[rows]]])
        sub_labels = torch.cat([labels[rows], labels[params.perm[rows]]])
        mask = cp.mask if cp.mask is None or cp.mask.shape[0] == 1 else torch.cat([cp.mask, cp.mask])
        shared = MixParams(
            perm=torch.cat([torch.arange(n) + n, torch.arange(n)]), lam=cp.lam.repeat(2), mask=mask, erase=cp.erase
        )
        batch = mixer.apply(sub.clone(), sub_labels, shared)
        for k, i in enumerate(rows.tolist()):
            out[i] = (batch.images[k], batch.labels_b[k], batch.lam[k])
    return out


COMBOS = [
    ("mixup+cutmix", {}),
    ("lmix+cutmix", {}),
    ("lmix+mixup", {"batch_components": True}),
    ("none+mixup+cutout", {}),
    ("cutout+fmix", {}),
    ("lmix+mixup", {"image_k": 1.0}),
]


@pytest.mark.parametrize("name,params", COMBOS, ids=[f"{n}-{p}" for n, p in COMBOS])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_each_sample_is_its_components_output(name, params, dtype):
    if params.pop("batch_components", False):  # per-sample choice, one lam and mask per component
        parts = [lmix.create_mixer(part, mode="batch", seed=i) for i, part in enumerate(name.split("+"))]
        choice = lmix.MixChoice(parts, mode="sample", seed=0)
    else:
        choice = lmix.create_mixer(name, mode="sample", seed=0, **params)
    images = torch.rand(24, 3, 8, 8, generator=gen(1)).to(dtype)
    labels = torch.arange(24)
    params_ = choice.sample(24, (8, 8), device=CPU, generator=gen(2))
    assert params_.choice.shape == (24,) and params_.choice.dtype == torch.int64
    out = choice.apply(images, labels, params_)
    refs = component_outputs(choice, images, labels, params_)
    used = set()
    for i in range(24):
        c = int(params_.choice[i])
        used.add(c)
        ref_image, ref_label_b, ref_lam = refs[i]
        assert torch.equal(out.images[i], ref_image), (i, c)
        assert torch.equal(out.labels_b[i], ref_label_b) and torch.equal(out.lam[i], ref_lam), (i, c)
    assert used == set(range(len(choice.mixers)))  # 24 samples: every component is drawn
    assert out.images.dtype == dtype and out.lam.dtype == torch.float32


def test_call_equals_sample_then_apply_and_repeats():
    images, labels, _ = constant_images(16, 2, 6, 6)
    a = lmix.create_mixer("mixup+cutmix", mode="sample", p=[0.5, 0.5], seed=3)
    b = lmix.create_mixer("mixup+cutmix", mode="sample", p=[0.5, 0.5], seed=4)
    x = a(images, labels, generator=gen(5))
    y = b.apply(images, labels, b.sample(16, (6, 6), device=CPU, generator=gen(5)))
    assert torch.equal(x.images, y.images) and torch.equal(x.lam, y.lam) and torch.equal(x.labels_b, y.labels_b)
    # Own generators: two equal seeds give equal streams; the state round-trips.
    c = lmix.create_mixer("mixup+cutmix", mode="sample", seed=3)
    first, second = a(images, labels), c(images, labels)
    assert torch.equal(first.images, second.images)
    state = a.state_dict()
    expected = a(images, labels)
    c.load_state_dict(state)
    assert torch.equal(c(images, labels).images, expected.images)


def test_choice_frequencies_follow_p():
    choice = lmix.create_mixer("mixup+cutmix", mode="sample", p=[0.2, 0.8], seed=0)
    counts = torch.zeros(2)
    for seed in range(20):
        params = choice.sample(500, (4, 4), device=CPU, generator=gen(seed))
        counts += torch.bincount(params.choice, minlength=2)
    n = 10000
    assert abs(float(counts[0]) - 0.2 * n) < 5 * (n * 0.2 * 0.8) ** 0.5
    one_sided = lmix.create_mixer("mixup+cutmix", mode="sample", p=[0.0, 1.0], seed=0)
    assert bool((one_sided.sample(64, (4, 4), device=CPU, generator=gen()).choice == 1).all())


def test_shared_partners_use_the_first_components_pairing():
    images, labels, _ = constant_images(9, 1, 6, 6)
    choice = lmix.MixChoice(
        [lmix.Mixup(pairing="flip", seed=0), lmix.CutMix(pairing="random", seed=1)], mode="sample", seed=2
    )
    out = choice(images, labels)
    assert torch.equal(out.labels_b, labels.flip(0))
    no_self = lmix.create_mixer("cutout+mixup", mode="sample", pairing="no_self", seed=0)
    assert no_self.pairing == "no_self"
    for _ in range(10):
        params = no_self.sample(9, (6, 6), device=CPU, generator=gen(_))
        assert not bool((params.perm == torch.arange(9)).any())


def test_cutout_and_none_samples_keep_their_labels():
    images, labels, _ = constant_images(32, 1, 8, 8)
    choice = lmix.create_mixer("none+cutout+mixup", mode="sample", seed=1)
    params = choice.sample(32, (8, 8), device=CPU, generator=gen(1))
    out = choice.apply(images, labels, params)
    kept = params.choice <= 1
    assert torch.equal(out.labels_b[kept], labels[kept]) and bool((out.lam[kept] == 1).all())
    none = params.choice == 0
    assert torch.equal(out.images[none], images[none])
    cut = params.choice == 1
    assert bool((out.images[cut] == 0).any()) and bool(
        ((out.images[cut] == 0) | (out.images[cut] == images[cut])).all()
    )


def test_create_mixer_passes_mode_and_repr_shows_it():
    choice = lmix.create_mixer("mixup+cutmix", mode="sample", p=[0.5, 0.5], alpha=0.8)
    assert choice.mode == "sample" and choice.p == [0.5, 0.5]
    assert [m.mode for m in choice.mixers] == ["sample", "sample"]
    assert [m.alpha for m in choice.mixers] == [0.8, 0.8]
    assert "mode='sample'" in repr(choice)
    default = lmix.create_mixer("lmix+mixup")  # one method per batch, parameters per sample
    assert default.mode == "batch" and [m.mode for m in default.mixers] == ["sample", "sample"]
    with pytest.warns(DeprecationWarning, match="granularity"):
        old = lmix.create_mixer("mixup+cutmix", granularity="sample")
    assert old.mode == "sample" and [m.mode for m in old.mixers] == ["sample", "sample"]
    with pytest.warns(DeprecationWarning, match="granularity"):
        assert old.granularity == "sample"


def test_forward_loss_per_sample():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))
    choice = lmix.create_mixer("mixup+cutmix", mode="sample", seed=0)
    images, labels = torch.rand(6, 3, 8, 8), torch.arange(6) % 5
    logits, loss, batch = choice.forward_loss(model, images, labels)
    assert logits.shape == (6, 5) and loss.ndim == 0
    assert torch.allclose(loss, lmix.mixed_cross_entropy(model(batch.images), batch))


def test_per_sample_errors():
    with pytest.raises(ValueError, match="mode must be 'batch'.*or 'sample'"):
        lmix.MixChoice([lmix.Mixup(), lmix.CutMix()], mode="pixel")
    with pytest.raises(ValueError, match="schedule='alternate' needs mode='batch'"):
        lmix.create_mixer("mixup+cutmix", mode="sample", schedule="alternate")
    with pytest.raises(ValueError, match="mode='sample' combines input-space mixers.*PatchUp"):
        lmix.create_mixer("patchup+mixup", mode="sample")
    with pytest.raises(TypeError, match="ChoiceParams"):
        choice = lmix.create_mixer("mixup+cutmix", mode="sample")
        choice.apply(torch.rand(2, 1, 4, 4), torch.arange(2), MixParams(perm=torch.arange(2), lam=torch.ones(2)))


def test_batch_mode_sample_apply_delegates():
    choice = lmix.create_mixer("lmix+mixup", seed=0, schedule="alternate")
    images, labels = torch.rand(4, 2, 8, 8), torch.arange(4)
    params = choice.sample(4, (8, 8), device=CPU, generator=gen())
    assert params.index == 0 and params.mask is not None and choice.calls == 1
    out = choice.apply(images, labels, params)
    assert torch.equal(out.images, choice.mixers[0].apply(images, labels, params.inner).images)
