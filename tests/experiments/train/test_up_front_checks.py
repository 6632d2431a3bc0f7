"""What ``lmix train`` can tell from the settings and the data set's info is refused before anything is
written: a method whose mixer does not take the data's kind (PatchUp on sequences, in a combination
too), a crop padding as large as the samples, a missing tensorboard package. One line, exit 2, no
run folder: the corrected command then runs where the wrong one was tried."""

from __future__ import annotations

import itertools
import sys

import pytest
import torch

from lmix.data import dataset_info, list_datasets
from lmix.errors import LmixValueError
from lmix.experiments.cli import main
from lmix.experiments.train import TrainConfig
from lmix.experiments.train.mixer_config import mixer_from_config
from lmix.experiments.train.trainer import check_input_kind
from lmix.mixing.registry import list_mixers
from tests.cli_helpers import one_line_error
from tests.data import fakes

# a data set of each kind, with a model that takes it
KINDS = {1: ("osuleaf", "cnn1d"), 2: ("digits", "simple_cnn")}
METHODS = list_mixers() + [f"{a}+{b}" for a, b in itertools.permutations(list_mixers(), 2)]
QUICK = ["--epochs", "1", "--no-progress", "--eval-train", "0"]


def _config(spatial_dims: int, **settings) -> TrainConfig:
    dataset, model = KINDS[spatial_dims]
    return TrainConfig(dataset=dataset, model=model, **settings).resolve().validate()


def _takes(mixer, spatial_dims: int) -> bool:
    """Whether the built mixer accepts a batch of the data's kind (the check its first step makes)."""
    shape = (4, 1, *([8] * spatial_dims))
    try:
        mixer.check_batch(torch.rand(shape), torch.arange(4))
    except LmixValueError:
        return False
    return True


def test_every_method_on_every_kind_of_data_is_refused_up_front_exactly_when_its_mixer_would_refuse_the_batch():
    refused = []
    for method, spatial_dims in itertools.product(METHODS, sorted(KINDS)):
        try:
            config = _config(spatial_dims, method=method, box_size=4)  # a box that fits both data sets
            mixer = mixer_from_config(config)
        except LmixValueError:
            continue  # refused for its settings, whatever the data
        if _takes(mixer, spatial_dims):
            check_input_kind(config)
            continue
        with pytest.raises(LmixValueError) as err:
            check_input_kind(config)
        message = str(err.value)
        assert "\n" not in message and f"data set {config.dataset!r} holds" in message, message
        for name in message.rsplit("use one of: ", 1)[1].split(", "):  # every method offered takes the data
            assert _takes(mixer_from_config(_config(spatial_dims, method=name, box_size=4)), spatial_dims), name
        refused.append((method, spatial_dims))
    # PatchUp mixes 2-D feature maps: it, and every combination with it, takes images only
    assert sorted(refused) == sorted((m, 1) for m in METHODS if "patchup" in m.split("+"))


@pytest.mark.parametrize("method", ["patchup", "patchup+mixup", "mixup+patchup"])
def test_patchup_on_sequences_is_refused_before_a_folder_is_made_and_the_fixed_command_then_runs(
    capsys, tmp_path, method
):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "osuleaf", "--model", "cnn1d", *QUICK, "--out", str(out)]
    line = one_line_error(capsys, [*argv, "--method", method], "'patchup' takes images (B, C, H, W)", "osuleaf")
    assert method in line and not out.exists()
    assert main([*argv, "--method", "lmix"]) == 0


@pytest.mark.parametrize("dataset", [d for d in list_datasets() if dataset_info(d).image_size is not None])
def test_the_crop_padding_is_less_than_the_side_of_every_data_set_s_samples(dataset):
    info = dataset_info(dataset)
    side = min(info.image_size)
    model = "cnn1d" if info.spatial_dims == 1 else "simple_cnn"
    ok = TrainConfig(dataset=dataset, model=model, method="none", crop_padding=side - 1).resolve().validate()
    check_input_kind(ok)
    for padding in (side, side + 1, 10**8):
        config = TrainConfig(dataset=dataset, model=model, method="none", crop_padding=padding).resolve().validate()
        with pytest.raises(LmixValueError) as err:
            check_input_kind(config)
        assert str(err.value).startswith(f"crop_padding {padding} is too large for the ")
        assert f"give --crop-padding a padding in [0, {side - 1}]" in str(err.value)
        config.augment = False  # no crop: the padding is not used
        check_input_kind(config)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--dataset", "osuleaf", "--model", "cnn1d", "--crop-padding", "100000000"], "[0, 426]"),
        (["--dataset", "osuleaf", "--model", "cnn1d", "--crop-padding", "1000"], "sequences of length 427"),
        (["--dataset", "digits", "--width", "8", "--crop-padding", "100000"], "8x8 images of digits"),
        (["--dataset", "digits", "--width", "8", "--crop-padding", "8"], "[0, 7]"),
    ],
)
def test_a_crop_padding_too_large_is_one_line_and_writes_nothing(capsys, tmp_path, argv, needle):
    out = tmp_path / "run"
    one_line_error(capsys, ["train", *argv, *QUICK, "--out", str(out)], "crop_padding", needle)
    assert not out.exists()


def test_an_image_folder_s_crop_padding_is_checked_once_its_size_is_read(capsys, tmp_path):
    data = fakes.write_imagefolder(tmp_path / "imgs", per_class=4, size=(6, 5))  # 6x5 images: side 5
    argv = ["train", "--dataset", "imagefolder", "--data-root", str(data), "--width", "8", "--batch-size", "4", *QUICK]
    out = tmp_path / "run"
    one_line_error(capsys, [*argv, "--crop-padding", "5", "--out", str(out)], "6x5 images of imagefolder", "[0, 4]")
    assert not out.exists()
    assert main([*argv, "--crop-padding", "4", "--out", str(out)]) == 0


def test_a_missing_tensorboard_is_said_before_a_folder_is_made(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # importing it raises ImportError
    out = tmp_path / "tb"
    argv = [
        "train",
        "--dataset",
        "digits",
        "--width",
        "8",
        "--train-subset",
        "64",
        "--batch-size",
        "32",
        *QUICK,
        "--out",
        str(out),
    ]
    one_line_error(capsys, [*argv, "--tensorboard", "true"], "--tensorboard needs the tensorboard package")
    assert not out.exists()
    assert main(argv) == 0  # the same folder, without TensorBoard
