"""FGSM and the pixel-space wrapper on tiny untrained models: bounds, exactness, modes, eps parsing."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmix.data import DeviceLoader, dataset_info
from lmix.experiments.attack import Normalized, fgsm, fgsm_accuracy, parse_eps
from lmix.experiments.metrics import evaluate
from lmix.models import create_model

INFO = dataset_info("digits")


def _model(device, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("simple_cnn", num_classes=10, in_channels=1, width=4).to(device)


def _data(n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=g)
    return images, labels


def _pixels(images_u8, device):
    return images_u8.to(device).float().mul_(1.0 / 255)


def test_normalized_feeds_the_model_exactly_what_the_data_loader_does(device):
    model = _model(device).eval()
    images, labels = _data()
    loader = DeviceLoader(images, labels, info=INFO, batch_size=16, train=False, device=device, seed=0)
    wrapped = Normalized(model, INFO.mean, INFO.std).to(device)
    with torch.no_grad():
        for start, (x_norm, _) in zip(range(0, 40, 16), loader):
            assert torch.equal(wrapped(_pixels(images[start : start + 16], device)), model(x_norm))


@pytest.mark.parametrize("eps", [0.0, 1 / 255, 8 / 255, 0.3, 1.0])
def test_fgsm_stays_within_eps_and_the_pixel_range(device, eps):
    model = Normalized(_model(device), INFO.mean, INFO.std).to(device)
    images, labels = _data()
    x = _pixels(images, device)
    x_adv = fgsm(model, x, labels.to(device), eps)
    assert x_adv.shape == x.shape and x_adv.dtype == torch.float32 and not x_adv.requires_grad
    assert (x_adv - x).abs().max().item() <= eps + 1e-6
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0
    if eps == 0:
        assert torch.equal(x_adv, x)
    elif eps < 0.5:
        # Pixels away from the range's ends move by exactly eps (no gradient is exactly zero here).
        inner = (x > eps) & (x < 1 - eps)
        moved = (x_adv - x).abs()[inner]
        assert torch.allclose(moved, torch.full_like(moved, eps), atol=1e-6)


def test_fgsm_increases_the_loss_of_a_linear_model():
    """CE of a linear model is convex in x: a step along sign(grad) never lowers any sample's loss."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    images, labels = _data(n=64)
    x = _pixels(images, "cpu")
    x_adv = fgsm(model, x, labels, 4 / 255)
    with torch.no_grad():
        before = F.cross_entropy(model(x), labels, reduction="none")
        after = F.cross_entropy(model(x_adv), labels, reduction="none")
    assert (after >= before - 1e-6).all()
    assert (after - before).mean() > 0.01


def test_fgsm_uses_eval_mode_restores_the_mode_and_leaves_parameters_alone():
    net = _model("cpu")
    model = Normalized(net, INFO.mean, INFO.std)
    model.train()
    buffers = {k: v.clone() for k, v in net.state_dict().items()}
    images, labels = _data()
    x = _pixels(images, "cpu")
    a = fgsm(model, x, labels, 8 / 255)
    assert model.training and net.training
    assert all(p.grad is None for p in net.parameters())
    # BatchNorm running statistics untouched (eval mode), and the result does not depend on the mode.
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in buffers.items())
    model.eval()
    assert torch.equal(fgsm(model, x, labels, 8 / 255), a)
    assert not model.training


def test_fgsm_accuracy_at_eps_zero_is_the_trainer_evaluation(device):
    net = _model(device)
    images, labels = _data(n=50)
    loader = DeviceLoader(images, labels, info=INFO, batch_size=16, train=False, device=device, seed=0)
    _, clean, n = evaluate(net, loader)
    model = Normalized(net, INFO.mean, INFO.std)
    acc = fgsm_accuracy(model, images, labels, [0.0, 2 / 255, 0.5], batch_size=16, device=device)
    assert n == 50 and acc[0] == clean
    assert all(0.0 <= a <= 100.0 for a in acc)
    # Float pixels in [0, 1] give the same numbers as uint8, and the batch size does not matter.
    assert fgsm_accuracy(model, images.float() / 255, labels, [0.0], batch_size=50, device=device)[0] == clean


def test_fgsm_accuracy_matches_per_eps_fgsm_calls():
    model = Normalized(_model("cpu"), INFO.mean, INFO.std)
    images, labels = _data(n=30)
    eps_list = [0.0, 4 / 255, 16 / 255]
    acc = fgsm_accuracy(model, images, labels, eps_list, batch_size=7, device="cpu")
    x = _pixels(images, "cpu")
    expected = []
    model.eval()
    for eps in eps_list:
        with torch.no_grad():
            pred = model(fgsm(model, x, labels, eps)).argmax(1)
        expected.append(100.0 * (pred == labels).sum().item() / 30)
    assert acc == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m, x, y: fgsm(m, x, y, -0.1), "eps must be"),
        (lambda m, x, y: fgsm(m, x, y, float("nan")), "eps must be"),
        (lambda m, x, y: fgsm(m, x * 2 - 0.5, y, 0.1), r"pixel range \[0, 1\]"),
        (lambda m, x, y: fgsm(m, x, y[:3], 0.1), "labels must be"),
        (lambda m, x, y: fgsm_accuracy(m, x, y, [0.1], batch_size=0, device="cpu"), "batch_size"),
        (lambda m, x, y: fgsm_accuracy(m, x, y, [], batch_size=4, device="cpu"), "at least one"),
        (lambda m, x, y: Normalized(m, (0.5,), (0.0,)), "std"),
        (lambda m, x, y: Normalized(m, (0.5, 0.5), (0.2,)), "one value per channel"),
    ],
)
def test_bad_arguments(call, match):
    model = Normalized(_model("cpu"), INFO.mean, INFO.std)
    images, labels = _data(n=8)
    with pytest.raises(ValueError, match=match):
        call(model, _pixels(images, "cpu"), labels)


@pytest.mark.parametrize(
    "text, units, eps_255",
    [
        ("0,1,2,4,8", "auto", [0, 1, 2, 4, 8]),
        (" 0, 8 ", "auto", [0, 8]),
        ("0,0.5,1,2", "auto", [0, 0.5, 1, 2]),  # 1 and 2 are not < 1: 1/255 units
        ("0,0.01,0.03", "auto", [0, 2.55, 7.65]),  # all < 1 with a decimal point: fractions
        ("0,1e-2", "auto", [0, 2.55]),
        ("0,1,2", "float", [0, 255, 510]),
        ("0,0.5", "255", [0, 0.5]),
    ],
)
def test_parse_eps_units_rule(text, units, eps_255):
    if units == "float" and max(eps_255) > 255:
        with pytest.raises(ValueError, match="exceed the pixel range"):
            parse_eps(text, units=units)
        return
    eps, e255 = parse_eps(text, units=units)
    assert e255 == pytest.approx(eps_255)
    assert eps == pytest.approx([v / 255 for v in eps_255])


@pytest.mark.parametrize("text", ["", "0,,1", "a,b", "0,-1", "0,nan", "0,inf", "300"])
def test_parse_eps_rejects(text):
    with pytest.raises(ValueError):
        parse_eps(text)
