"""``lmix train`` user errors: one line on stderr, exit code 2, nothing overwritten."""

from __future__ import annotations

import hashlib

import pytest

from lmix.experiments.cli import main
from tests.cli_helpers import one_line_error

QUICK = [
    "--dataset",
    "digits",
    "--model",
    "simple_cnn",
    "--width",
    "8",
    "--epochs",
    "1",
    "--no-progress",
    "--eval-train",
    "0",
]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--dataset", "imagenet22k"], "cifar10"),
        (["--model", "resnet9000"], "preact_resnet18"),
        (["--method", "supermix"], "lmix"),
        (["--method", "lmix+supermix"], "known mixers"),
        (["--epochs", "0"], "epochs"),
        (["--batch-size", "-3"], "batch_size"),
        (["--lr", "0"], "lr"),
        (["--epochs", "5", "--milestones", "2,9"], "past the last epoch"),
        (["--epochs", "abc"], "invalid int"),
        (["--alpha", "-1"], "alpha"),
        (["--config", "/nonexistent/file.yaml"], "does not exist"),
        (["--method", "cutmix", "--box-size", "100"], "box_size 100 is larger than the 8x8 images of digits"),
        (["--method", "cutout", "--box-size", "9"], "give --box-size a side in [1, 8]"),
        (["--method", "cutout"], "box_size 16 (cutout's default) is larger than the 8x8 images"),
        (["--resume", "--restart"], "not allowed with argument --resume"),
    ],
)
def test_bad_arguments(capsys, tmp_path, extra, needle):
    line = one_line_error(capsys, ["train", *QUICK, "--out", str(tmp_path / "run"), *extra])
    assert needle in line
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_missing_data_names_root_and_flag(capsys, tmp_path):
    line = one_line_error(
        capsys,
        [
            "train",
            *QUICK,
            "--dataset",
            "cifar10",
            "--data-root",
            str(tmp_path / "nodata"),
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert str(tmp_path / "nodata") in line and "--download" in line


def test_out_dir_of_another_run_and_corrupt_checkpoint(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", *QUICK, "--out", str(out)]) == 0
    capsys.readouterr()
    ckpt = out / "checkpoint.pt"
    before = hashlib.sha256(ckpt.read_bytes()).hexdigest()

    assert "different run" in one_line_error(capsys, ["train", *QUICK, "--method", "mixup", "--out", str(out)])
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == before

    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])  # truncated
    truncated = ckpt.read_bytes()
    assert "corrupt or truncated" in one_line_error(capsys, ["train", *QUICK, "--out", str(out)])
    assert ckpt.read_bytes() == truncated

    ckpt.write_bytes(b"not a checkpoint at all")
    assert "corrupt or truncated" in one_line_error(capsys, ["train", *QUICK, "--out", str(out)])


def test_resume_flag(capsys, tmp_path):
    assert "no run to resume" in one_line_error(capsys, ["train", "--resume", "--out", str(tmp_path / "none")])
    out = tmp_path / "run"
    assert main(["train", *QUICK, "--out", str(out)]) == 0
    assert main(["train", "--resume", "--out", str(out)]) == 0  # complete: skipped
    assert "already complete" in capsys.readouterr().out


def test_models_and_methods_commands(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("lmix", "fmix", "mixup", "cutmix", "cutout", "none"):
        assert name in out
    assert main(["models"]) == 0
    assert "preact_resnet18" in capsys.readouterr().out


def test_help_of_every_command(capsys):
    from lmix.experiments.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0, name
        assert "usage: lmix " + name in capsys.readouterr().out
