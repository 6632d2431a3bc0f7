"""The training step's mixing is free of host-device synchronisation.

On CPU: given sampled parameters, ``apply`` + ``mixed_cross_entropy`` of every input-space mixer
compile with ``torch.compile(fullgraph=True)``, which fails on any ``.item()``, ``bool(tensor)``,
data-dependent shape or Python branch on a tensor value, and give the eager loss. The
``aot_eager`` backend traces through ATen with fake tensors (the strict part of compilation)
without the minutes inductor's C++ compilation takes on a small CPU. On CUDA: whole steps of
every method under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch._dynamo

import lmix
from lmix.mixing import sampling
from lmix.mixing.sampling import sample_beta
from tests.mixing._util import constant_images

CPU = torch.device("cpu")
INPUT_SPACE = [n for n in lmix.list_mixers() if not lmix.create_mixer(n, seed=0).uses_model]
CONFIGS = [(n, {}) for n in INPUT_SPACE] + [
    ("lmix", {"alpha": 0.4, "mode": "batch", "image_k": 1.0}),
    ("lmix+mixup", {}),
    ("mixup+cutmix+cutout", {"mode": "sample"}),
    # soft masks (float weights, blended) alone and beside Mixup's rows
    ("fmix", {"max_soft": 0.1, "reformulate": True}),
    ("lmix+mixup+cutout", {"mode": "sample", "max_soft": 0.1}),
]


def loss_fn(mixer: lmix.Mixer, weight: torch.Tensor):
    def fn(images, labels, params):
        batch = mixer.apply(images, labels, params)
        logits = batch.images.flatten(1) @ weight
        return mixed_cross_entropy_with_targets(logits, batch)

    return fn


def mixed_cross_entropy_with_targets(logits, batch):
    loss = lmix.mixed_cross_entropy(logits, batch, label_smoothing=0.1)
    soft = batch.soft_targets(logits.shape[1], label_smoothing=0.1)
    return loss + (soft * logits).sum() * 0.0 + soft.sum() * 1e-3


@pytest.mark.parametrize("name,params", CONFIGS, ids=[f"{n}{p or ''}" for n, p in CONFIGS])
def test_apply_and_loss_compile_fullgraph(name, params):
    torch._dynamo.reset()
    mixer = lmix.create_mixer(name, seed=0, **params)
    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    weight = torch.randn(3 * 8 * 8, 4, generator=torch.Generator().manual_seed(2))
    sampled = mixer.sample(6, (8, 8), device=CPU, generator=torch.Generator().manual_seed(3))
    fn = loss_fn(mixer, weight)
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    expected = fn(images.clone(), labels, sampled)
    assert torch.allclose(compiled(images.clone(), labels, sampled), expected)
    # With autograd on the images (the out-of-place torch.where path that CUDA takes), gradients
    # too; dynamo alone (backend "eager") already rejects every graph break, and is faster.
    x_eager, x_comp = images.clone().requires_grad_(), images.clone().requires_grad_()
    fn(x_eager, labels, sampled).backward()
    torch.compile(fn, fullgraph=True, backend="eager")(x_comp, labels, sampled).backward()
    assert torch.allclose(x_comp.grad, x_eager.grad, atol=1e-6)


def test_label_range_is_checked_inside_compiled_code():
    batch = lmix.MixedBatch(torch.rand(2, 1, 2, 2), torch.tensor([0, 5]), torch.tensor([0, 1]), torch.ones(2))
    logits = torch.randn(2, 3)
    compiled = torch.compile(lambda lg, b: lmix.mixed_cross_entropy(lg, b), fullgraph=True, backend="aot_eager")
    with pytest.raises(RuntimeError, match=r"labels_a must lie in \[0, 2\]"):
        compiled(logits, batch)
    with pytest.raises(ValueError, match=r"labels_a must lie in \[0, 2\] for num_classes=3, got 5"):
        lmix.mixed_cross_entropy(logits, batch)  # eager on CPU: the precise error


def first_accepted_log_gamma(concentration: float, n: int, g: torch.Generator) -> torch.Tensor:
    """The rejection sampler written with a loop per sample (test-side), on the same draws."""
    a = concentration if concentration >= 1 else concentration + 1
    d = a - 1 / 3
    c = 1 / math.sqrt(9 * d)
    x = torch.randn((n, sampling.GAMMA_CANDIDATES), generator=g, dtype=torch.float64)
    u = torch.rand((n, sampling.GAMMA_CANDIDATES), generator=g, dtype=torch.float64)
    out = torch.empty(n, dtype=torch.float64)
    for i in range(n):
        for j in range(sampling.GAMMA_CANDIDATES):
            v = (1 + c * x[i, j]) ** 3
            if v > 0 and math.log(u[i, j]) < 0.5 * x[i, j] ** 2 + d - d * v + d * math.log(v):
                out[i] = math.log(d * v)
                break
    if concentration < 1:
        out = out + torch.log(torch.rand(n, generator=g, dtype=torch.float64)) / concentration
    return out


@pytest.mark.parametrize("alpha,beta", [(0.2, 0.2), (2.0, 2.0), (0.5, 3.0)])
def test_beta_sampler_takes_the_first_accepted_of_a_fixed_number_of_candidates(alpha, beta):
    g = torch.Generator().manual_seed(5)
    lam = sample_beta(alpha, 40, beta=beta, generator=g, device=CPU)
    ref = torch.Generator().manual_seed(5)
    log_ga = first_accepted_log_gamma(alpha, 40, ref)
    log_gb = first_accepted_log_gamma(beta, 40, ref)
    assert torch.equal(lam, torch.sigmoid(log_ga - log_gb).float())
    # Fixed consumption of randomness, whatever was accepted: the generators end in step.
    assert torch.equal(g.get_state(), ref.get_state())


def test_gamma_sampler_falls_back_to_d_when_every_candidate_is_rejected(monkeypatch):
    monkeypatch.setattr(sampling, "GAMMA_CANDIDATES", 1)  # ~5% rejected at concentration 1
    g = torch.Generator().manual_seed(0)
    out = sampling._log_gamma(1.0, 4000, generator=g, dtype=torch.float64)
    fallback = out == math.log(1.0 - 1.0 / 3.0)
    assert 100 < int(fallback.sum()) < 300 and bool(torch.isfinite(out).all())


def test_beta_alpha_one_is_one_uniform_draw():
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(sample_beta(1.0, 33, generator=g1, device=CPU), torch.rand(33, generator=g2))
    assert torch.equal(g1.get_state(), g2.get_state())


def test_batch_choice_draws_from_the_cpu_generator():
    """Per batch, the choice uses a CPU generator: exactly today's multinomial stream on CPU."""
    choice = lmix.create_mixer("lmix+mixup", p=(0.3, 0.7), seed=4)
    reference = torch.Generator().manual_seed(4)
    images, labels, _ = constant_images(4, 1, 8, 8)
    picks = []
    for _ in range(12):
        expected = int(torch.multinomial(torch.tensor([0.3, 0.7]), 1, generator=reference))
        picks.append(expected)
        out = choice(images, labels).images
        is_mask = set(out.unique().tolist()) <= set(images.unique().tolist())
        assert is_mask == isinstance(choice.mixers[expected], lmix.LMix)
    assert set(picks) == {0, 1}
    assert list(choice.state_dict()["generators"]) == ["cpu"]


# -- CUDA ------------------------------------------------------------------------------------

ALL_METHODS = lmix.list_mixers() + ["lmix+mixup", "mixup+cutmix"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ALL_METHODS)
@pytest.mark.parametrize("choice_mode", ["batch", "sample"])
def test_cuda_training_steps_never_synchronise(name, choice_mode):
    if choice_mode == "sample" and "+" not in name:
        pytest.skip("the choice's mode applies to combinations")
    params = {"mode": "sample"} if choice_mode == "sample" and "+" in name else {}
    if name in ("mixup", "cutmix", "lmix", "fmix"):
        params["alpha"] = 0.4  # the Gamma sampler, not the uniform fast path
    mixer = lmix.create_mixer(name, seed=0, **params)
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = lmix.create_model("preact_resnet_tiny", num_classes=10).to(device)
    images = torch.rand(16, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (16,), device=device)

    def step():
        if mixer.uses_model:
            _, loss, _ = mixer.forward_loss(model, images, labels, label_smoothing=0.1)
        else:
            batch = mixer(images, labels)
            loss = lmix.mixed_cross_entropy(model(batch.images), batch, label_smoothing=0.1)
        loss.backward()

    step()  # warm-up: allocator, cuDNN/cuFFT plans, cached constants
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
