"""Registry, metadata, parameter counts, validation and the ``lmix models`` command."""

from __future__ import annotations

import pytest
import torch

import lmix.models as models
from lmix.experiments.cli import main
from lmix.models import StagedNet, count_parameters, create_model, list_models, model_info, register_model

ALL = list_models()
PAPER = ["preact_resnet18", "preact_resnet34", "wrn28_10", "densenet_bc_190", "pyramidnet272_200"]


def test_names() -> None:
    assert set(PAPER) <= set(ALL)
    assert {"simple_cnn", "preact_resnet_tiny"} <= set(ALL)
    assert len(ALL) == len(set(ALL))


@pytest.mark.parametrize("name", ALL)
def test_info(name: str) -> None:
    info = model_info(name)
    assert info.name == name
    assert info.paper == (name in PAPER)
    assert info.description and "\n" not in info.description
    assert info.params == count_parameters(name, 10, 3) > 0
    with torch.device("meta"):
        model = create_model(name, 10)
    assert isinstance(model, StagedNet)
    assert info.num_hook_points == model.num_hook_points == len(model.stages) >= 3
    assert set(info.options) == set(models.registry._options(models.registry._REGISTRY[name].builder))


@pytest.mark.parametrize("name", [n for n in ALL if model_info(n).published_params is not None])
def test_param_count_matches_published(name: str) -> None:
    info = model_info(name)
    assert abs(info.params - info.published_params) <= 0.01 * info.published_params, (
        info.params,
        info.published_params,
    )


def test_paper_param_counts() -> None:
    # The targets, independent of the registry's metadata.
    targets = {"preact_resnet18": 11.17e6, "wrn28_10": 36.5e6, "densenet_bc_190": 25.6e6, "pyramidnet272_200": 26.0e6}
    for name, target in targets.items():
        assert abs(count_parameters(name) - target) <= 0.01 * target, name


def test_known_counts_of_reference_code() -> None:
    # Exact counts of the reference implementations' architectures (10 classes), which pin the structure.
    assert count_parameters("wrn28_10") == 36_479_194  # xternalz/WideResNet-pytorch
    assert count_parameters("preact_resnet18") == 11_171_146 + 2 * 512  # kuangliu's + the final BN
    # The PyramidNet paper's 26.0M counts convolutions and the classifier only.
    with torch.device("meta"):
        model = create_model("pyramidnet272_200", 10)
    bn = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters())
    assert round((count_parameters("pyramidnet272_200") - bn) / 1e5) == 260


def test_count_depends_on_classes_and_channels() -> None:
    base = count_parameters("simple_cnn", 10, 3)
    assert count_parameters("simple_cnn", 100, 3) == base + 90 * (64 + 1)
    assert count_parameters("simple_cnn", 10, 1) == base - 2 * 16 * 9
    assert count_parameters("simple_cnn", 10, 3, width=32) > base


def test_cnn1d_counts_and_options() -> None:
    assert count_parameters("cnn1d", 6, 1) == 18_646  # the count its docstring and the OSULeaf study state
    assert count_parameters("cnn1d", 6, 1, kernel_size=3) < count_parameters("cnn1d", 6, 1)
    assert count_parameters("cnn1d", 6, 2) == 18_646 + 16 * 7  # one more input channel: 16 kernels of 7
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        create_model("cnn1d", 6, 1, kernel_size=4)
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        create_model("cnn1d", 6, 1, width=0)


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet9000'.*preact_resnet18.*simple_cnn"):
        create_model("resnet9000", 10)
    with pytest.raises(ValueError, match="known models"):
        model_info("nope")


@pytest.mark.parametrize("bad", [1, 0, -3])
def test_bad_num_classes_value(bad: int) -> None:
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        create_model("simple_cnn", bad)


@pytest.mark.parametrize("bad", [10.0, "10", True, None])
def test_bad_num_classes_type(bad: object) -> None:
    with pytest.raises(TypeError, match="num_classes"):
        create_model("simple_cnn", bad)  # type: ignore[arg-type]


def test_bad_in_channels() -> None:
    with pytest.raises(ValueError, match="in_channels must be an integer >= 1"):
        create_model("simple_cnn", 10, 0)
    with pytest.raises(TypeError, match="in_channels"):
        create_model("simple_cnn", 10, 3.0)  # type: ignore[arg-type]


def test_bad_options() -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['depth'\].*allowed: width=16"):
        create_model("simple_cnn", 10, depth=3)
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        create_model("preact_resnet_tiny", 10, width=0)
    with pytest.raises(ValueError, match="dropout"):
        create_model("preact_resnet_tiny", 10, dropout=1.0)
    with pytest.raises(ValueError, match="shakedrop"):
        create_model("pyramidnet272_200", 10, shakedrop=1.5)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        models.WideResNet(depth=27, widen_factor=2, num_classes=10)
    with pytest.raises(ValueError, match="9n \\+ 2"):
        models.PyramidNet(depth=30, alpha=10, num_classes=10)


def test_options_change_the_model() -> None:
    assert count_parameters("preact_resnet_tiny", width=8) < count_parameters("preact_resnet_tiny")
    with torch.device("meta"):
        wrn = create_model("wrn28_10", 10, dropout=0.3)
        pyr = create_model("pyramidnet272_200", 10, shakedrop=0.5)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.3 for m in wrn.modules())
    drops = [m.p_drop for m in pyr.modules() if isinstance(m, models.pyramidnet.ShakeDrop)]
    assert len(drops) == 90 and drops[-1] == pytest.approx(0.5) and drops[0] == pytest.approx(0.5 / 90)


def test_register_model_rules() -> None:
    with pytest.raises(ValueError, match="already taken"):

        @register_model("simple_cnn", paper=False, description="dup")
        def dup(*, num_classes: int, in_channels: int) -> StagedNet:
            raise AssertionError

    with pytest.raises(TypeError, match="keyword-only"):

        @register_model("bad_builder_positional", paper=False, description="x")
        def bad(num_classes: int, in_channels: int) -> StagedNet:
            raise AssertionError

    with pytest.raises(ValueError, match="one non-empty line"):
        register_model("x", paper=False, description="two\nlines")
    assert "bad_builder_positional" not in list_models()


def test_register_and_build_new_model() -> None:
    name = "test_only_linear_net"

    @register_model(name, paper=False, description="a one-stage test model")
    def build(*, num_classes: int, in_channels: int, width: int = 4) -> StagedNet:
        stage = torch.nn.Conv2d(in_channels, width, 1)
        head = models.ClassifierHead(width, num_classes, preact=False)
        return StagedNet([stage], head, num_classes=num_classes, num_features=width)

    try:
        assert name in list_models()
        out = create_model(name, 3, 2, width=5)(torch.zeros(2, 2, 8, 8))
        assert out.shape == (2, 3)
        assert model_info(name).options == {"width": 4}
    finally:
        models.registry._REGISTRY.pop(name)


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_init(name: str) -> None:
    torch.manual_seed(123)
    a = create_model(name, 10).state_dict()
    torch.manual_seed(123)
    b = create_model(name, 10).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(124)
    c = create_model(name, 10).state_dict()
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_cli_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ALL:
        assert name in out
    assert f"{count_parameters('preact_resnet18'):,}" in out
    assert "11.17M" in out and "36.50M" in out
    assert main(["models", "--num-classes", "100", "--in-channels", "1"]) == 0
    out = capsys.readouterr().out
    assert f"{count_parameters('densenet_bc_190', 100, 1):,}" in out


def test_cli_models_bad_args(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--num-classes", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--num-classes" in err
