"""MixedBatch.soft_targets and mixed_cross_entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lmix
from tests.mixing._util import config_id, mixer_configs

NUM_CLASSES = 10


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mixed_batch(config, b: int = 12, seed: int = 0) -> lmix.MixedBatch:
    name, params = config
    x = torch.rand(b, 3, 8, 8, generator=gen(seed))
    y = torch.randint(0, NUM_CLASSES, (b,), generator=gen(seed + 1))
    return lmix.create_mixer(name, **params)(x, y, generator=gen(seed + 2))


@pytest.mark.parametrize("config", mixer_configs(combinations=True), ids=config_id)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_soft_targets(config, smoothing):
    batch = mixed_batch(config)
    t = batch.soft_targets(NUM_CLASSES, label_smoothing=smoothing)
    assert t.shape == (12, NUM_CLASSES) and t.dtype == torch.float32
    assert torch.allclose(t.sum(dim=1), torch.ones(12), atol=1e-6)
    assert float(t.min()) >= smoothing / NUM_CLASSES - 1e-7
    lam = batch.lam
    onehot_a = F.one_hot(batch.labels_a, NUM_CLASSES).float()
    onehot_b = F.one_hot(batch.labels_b, NUM_CLASSES).float()
    expected = (1 - smoothing) * (lam[:, None] * onehot_a + (1 - lam[:, None]) * onehot_b) + smoothing / NUM_CLASSES
    assert torch.allclose(t, expected, atol=1e-6)
    rows = torch.arange(12)
    differ = batch.labels_a != batch.labels_b
    assert torch.allclose(t[rows, batch.labels_a][differ], (1 - smoothing) * lam[differ] + smoothing / NUM_CLASSES)


@pytest.mark.parametrize("config", mixer_configs(combinations=True), ids=config_id)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_mixed_cross_entropy_is_cross_entropy_against_soft_targets(config, smoothing):
    batch = mixed_batch(config, seed=3)
    logits = torch.randn(12, NUM_CLASSES, generator=gen(4), requires_grad=True)
    loss = lmix.mixed_cross_entropy(logits, batch, label_smoothing=smoothing)
    (grad,) = torch.autograd.grad(loss, logits)
    ref_logits = logits.detach().clone().requires_grad_(True)
    ref = F.cross_entropy(ref_logits, batch.soft_targets(NUM_CLASSES, label_smoothing=smoothing))
    (ref_grad,) = torch.autograd.grad(ref, ref_logits)
    assert loss.shape == () and loss.dtype == torch.float32
    assert torch.allclose(loss, ref, atol=1e-6)
    assert torch.allclose(grad, ref_grad, atol=1e-6)


def test_mixed_cross_entropy_reduces_to_cross_entropy_without_mixing():
    x = torch.rand(5, 1, 4, 4, generator=gen())
    y = torch.tensor([0, 3, 3, 9, 1])
    batch = lmix.create_mixer("none")(x, y)
    logits = torch.randn(5, NUM_CLASSES, generator=gen(1))
    assert torch.allclose(lmix.mixed_cross_entropy(logits, batch), F.cross_entropy(logits, y))
    assert torch.allclose(
        lmix.mixed_cross_entropy(logits, batch, label_smoothing=0.1), F.cross_entropy(logits, y, label_smoothing=0.1)
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_mixed_cross_entropy_low_precision_logits(dtype):
    batch = mixed_batch(("mixup", {}), seed=5)
    logits = torch.randn(12, NUM_CLASSES, generator=gen(6))
    loss = lmix.mixed_cross_entropy(logits.to(dtype), batch)
    assert loss.dtype == torch.float32
    assert torch.allclose(loss, lmix.mixed_cross_entropy(logits.to(dtype).float(), batch))


def test_mixed_batch_to_device():
    batch = mixed_batch(("lmix", {})).to("cpu")
    assert batch.images.device.type == "cpu" and batch.lam.device.type == "cpu"
