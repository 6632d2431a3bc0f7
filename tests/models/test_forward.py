"""Every registered model: forward/backward at the paper's input sizes, hooks, channels_last, tracing.

Generated from the registry, so a newly registered model is tested automatically, on the input
it declares (``model_info(name).spatial_dims``): images ``(B, C, s, s)`` or sequences
``(B, C, s)``. The large paper models are slow on one CPU thread: they get forward+backward at
28x28x1 and 32x32x3 and a no-grad forward at 64x64x3 (their 64x64 backward alone would take
~15 s); every other model gets forward+backward everywhere.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import Tensor, nn

import lmix.models as models
from lmix.models import count_parameters, create_model, list_models, model_info

ALL = list_models()
SIZES = [(1, 28), (3, 32), (3, 64)]
LARGE_PARAMS = 20_000_000  # above this, no backward at 64x64


@functools.lru_cache(maxsize=2)  # the big models take ~150 MB each: keep only the latest two
def _model(name: str, in_channels: int) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, 10, in_channels)


def _images(batch: int, channels: int, size: int, seed: int = 0, *, spatial_dims: int = 2) -> Tensor:
    """Images ``(batch, channels, size, size)``, or sequences ``(batch, channels, size)`` for ``spatial_dims=1``."""
    shape = (batch, channels) + (size,) * spatial_dims
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _inputs(name: str, batch: int, channels: int, size: int, seed: int = 0) -> Tensor:
    """The input model ``name`` declares it takes, at side (or length) ``size``."""
    return _images(batch, channels, size, seed, spatial_dims=model_info(name).spatial_dims)


@pytest.mark.parametrize("channels,size", SIZES, ids=[f"{c}x{s}x{s}" for c, s in SIZES])
@pytest.mark.parametrize("name", ALL)
def test_forward_backward(name: str, channels: int, size: int) -> None:
    model = _model(name, channels)
    assert sum(p.numel() for p in model.parameters()) == count_parameters(name, 10, channels)
    x = _inputs(name, 2, channels, size)
    if size == 64 and model_info(name).params > LARGE_PARAMS:
        model.eval()
        with torch.no_grad():
            out = model(x)
        assert out.shape == (2, 10) and torch.isfinite(out).all()
        return
    model.train()
    model.zero_grad(set_to_none=True)
    x.requires_grad_(True)
    out = model(x)
    assert out.shape == (2, 10) and out.dtype == torch.float32 and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    model.zero_grad(set_to_none=True)
    assert not missing, missing[:5]


@pytest.mark.parametrize("name", ALL)
def test_tiny_input_and_other_classes(name: str) -> None:
    # 8x8x1 is the offline digits data; 1x1 spatial in the last stages must still work.
    model = create_model(name, 3, 1) if model_info(name).params < LARGE_PARAMS else None
    if model is None:
        with torch.device("meta"):  # shape check only: the big models' forward at 8x8 is covered by the hooks test
            out = create_model(name, 3, 1)(torch.empty(2, 1, 8, 8, device="meta"))
        assert out.shape == (2, 3)
        return
    x = _inputs(name, 2, 1, 8)
    out = model(x)
    assert out.shape == (2, 3)
    out.sum().backward()
    model.eval()
    with torch.no_grad():
        assert model(_inputs(name, 5, 1, 9)).shape == (5, 3)  # odd size, other batch


@pytest.mark.parametrize("name", ALL)
def test_hooks(name: str) -> None:
    model = _model(name, 3).eval()
    x = _inputs(name, 2, 3, 8, seed=1)
    with torch.no_grad():
        ref = model(x)
        # What each hook point should see: point 0 the input, point i the output of stages[i - 1].
        expected = [x]
        for stage in model.stages[:-1]:
            expected.append(stage(expected[-1]))
        assert model.num_hook_points == len(model.stages)
        for i in range(model.num_hook_points):
            seen: list[Tensor] = []

            def identity(h: Tensor, seen: list[Tensor] = seen) -> Tensor:
                seen.append(h)
                return h

            out = model(x, hook=identity, hook_at=i)
            assert len(seen) == 1 and seen[0].shape == expected[i].shape
            torch.testing.assert_close(seen[0], expected[i], rtol=0, atol=0)
            torch.testing.assert_close(out, ref, rtol=0, atol=0)
            zeroed = model(x, hook=torch.zeros_like, hook_at=i)
            assert zeroed.shape == ref.shape and not torch.allclose(zeroed, ref)
            # Mixing the batch with its reverse at this point (what PatchUp does) changes the outputs.
            mixed = model(x, hook=lambda h: 0.5 * (h + h.flip(0)), hook_at=i)
            assert not torch.allclose(mixed, ref)
        features = model.forward_features(x)
        torch.testing.assert_close(features, model.stages[-1](expected[-1]), rtol=0, atol=0)
        assert features.shape[1] == model.num_features
        torch.testing.assert_close(model.head(features), ref, rtol=0, atol=0)


def test_hook_gradient_flows_through_hook() -> None:
    model = _model("preact_resnet_tiny", 3).train()
    x = _images(2, 3, 8)
    scale = torch.tensor(2.0, requires_grad=True)
    model(x, hook=lambda h: h * scale, hook_at=2).sum().backward()
    model.zero_grad(set_to_none=True)
    assert scale.grad is not None and scale.grad != 0


def test_hook_argument_errors() -> None:
    model = _model("simple_cnn", 3)
    x = _images(1, 3, 8)
    with pytest.raises(ValueError, match="together"):
        model(x, hook=lambda h: h)
    with pytest.raises(ValueError, match="together"):
        model(x, hook_at=0)
    for bad in (-1, 3, 1.0, True):
        with pytest.raises(ValueError, match=r"hook_at must be an int in \[0, 2\]"):
            model(x, hook=lambda h: h, hook_at=bad)
    with pytest.raises(TypeError, match="callable"):
        model(x, hook=3, hook_at=0)  # type: ignore[arg-type]


# Hook-point shapes at 32x32x3 as documented in each model module (channels, height, width).
DOCUMENTED_SHAPES = {
    "preact_resnet18": [(3, 32, 32), (64, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8)],
    "preact_resnet34": [(3, 32, 32), (64, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8)],
    "preact_resnet_tiny": [(3, 32, 32), (16, 32, 32), (16, 32, 32), (32, 16, 16), (64, 8, 8)],
    "wrn28_10": [(3, 32, 32), (16, 32, 32), (160, 32, 32), (320, 16, 16)],
    "densenet_bc_190": [(3, 32, 32), (80, 32, 32), (660, 16, 16), (950, 8, 8)],
    "pyramidnet272_200": [(3, 32, 32), (16, 32, 32), (332, 32, 32), (596, 16, 16)],
    "simple_cnn": [(3, 32, 32), (16, 16, 16), (32, 8, 8)],
    "cnn1d": [(3, 32), (16, 16), (32, 8)],  # sequences of length 32
}


def test_every_model_has_documented_hook_shapes() -> None:
    assert set(DOCUMENTED_SHAPES) == set(ALL)


@pytest.mark.parametrize("name", sorted(DOCUMENTED_SHAPES))
def test_documented_hook_shapes(name: str) -> None:
    # Shapes only, no compute; test_hooks shows that hook point i sees the output of stages[i - 1].
    with torch.device("meta"):
        model = create_model(name, 10).eval()
        h = torch.empty(2, *DOCUMENTED_SHAPES[name][0])
        shapes = [tuple(h.shape)]
        for stage in model.stages[:-1]:
            h = stage(h)
            shapes.append(tuple(h.shape))
    assert shapes == [(2, *s) for s in DOCUMENTED_SHAPES[name]]


def test_every_model_declares_its_input() -> None:
    # An image model refuses sequences and the sequence model images: each runs on its own kind only.
    for name in ALL:
        dims = model_info(name).spatial_dims
        assert dims in (1, 2) and (dims == 1) == (name == "cnn1d")
    assert list_models(spatial_dims=1) == ["cnn1d"] and "cnn1d" not in list_models(spatial_dims=2)
    assert sorted(list_models(spatial_dims=1) + list_models(spatial_dims=2)) == sorted(ALL)
    with pytest.raises(RuntimeError):
        _model("cnn1d", 3)(_images(2, 3, 16))


@pytest.mark.parametrize("name", list_models(spatial_dims=2))  # channels_last is a layout of 4-D tensors
def test_channels_last(name: str) -> None:
    model = _model(name, 3).eval()
    x = _images(2, 3, 16)
    with torch.no_grad():
        ref = model(x)
        model.to(memory_format=torch.channels_last)
        try:
            out = model(x.to(memory_format=torch.channels_last))
        finally:
            model.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["simple_cnn", "preact_resnet_tiny", "small_pyramidnet_shakedrop", "cnn1d"])
def test_dynamo_traces_without_graph_breaks(name: str) -> None:
    # fullgraph=True fails on any graph break (data-dependent Python control flow, .item(), ...).
    # The "eager" backend only traces, so this stays fast on a CPU.
    torch._dynamo.reset()
    if name == "small_pyramidnet_shakedrop":
        model = models.PyramidNet(depth=11, alpha=12, num_classes=4, shakedrop=0.5)
    else:
        model = create_model(name, 4)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    x = _images(2, 3, 8) if name != "cnn1d" else _images(2, 3, 8, spatial_dims=1)
    compiled(x).sum().backward()
    compiled(x, hook=lambda h: h.flip(0), hook_at=1).sum().backward()
    model.eval()
    torch.testing.assert_close(compiled(x), model(x))


def test_shakedrop() -> None:
    x = torch.randn(4, 3, 2, 2, requires_grad=True)
    drop = models.pyramidnet.ShakeDrop(1.0)  # always "dropped": forward alpha in [-1, 1], backward beta in [0, 1]
    torch.manual_seed(0)
    out = drop(x)
    ratio = (out / x).detach()
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio), atol=1e-5)  # one factor per sample
    assert ratio.abs().max() <= 1 and ratio.flatten(1)[:, 0].unique().numel() == 4
    out.sum().backward()
    g = x.grad.flatten(1)
    assert (g >= 0).all() and (g <= 1).all() and not torch.allclose(g, ratio.flatten(1))
    x.grad = None
    keep = models.pyramidnet.ShakeDrop(0.0)
    keep(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    torch.testing.assert_close(models.pyramidnet.ShakeDrop(0.25).eval()(x), 0.75 * x)
    with pytest.raises(ValueError, match="p_drop"):
        models.pyramidnet.ShakeDrop(1.5)
