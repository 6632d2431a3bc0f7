"""Every code block of docs/integrations.md and of the README's integrations section runs, and the
README's sequences-and-volumes example.

Each block runs with the real packages (timm, torchvision, Lightning, accelerate) in this
process; the checks after each block then drive the example's objects (a Lightning Trainer
fitting the module with validation, accelerate's save_state/load_state). The launcher command
runs with a small stand-in for timm's train.py. The 2-process runs of the README's Lightning
and accelerate examples are in test_lightning.py and test_accelerate.py.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("timm")
import timm.data  # noqa: E402
import timm.data.loader  # noqa: E402
import timm.data.mixup  # noqa: E402

import lmix  # noqa: E402
from lmix.integrations import timm as lt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("timm_train_script.py")
README_SECTION = "## Use it with timm / torchvision / Lightning / accelerate"
LOOP_SECTION = "## Use it in your training loop"


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block."""
    return [(lang, code) for lang, code in re.findall(r"^```(\w+)\n(.*?)^```", text, flags=re.M | re.S)]


def readme_section(title: str = README_SECTION) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(title)
    end = text.index("\n## ", start + len(title))
    return text[start:end]


def kind(lang: str, code: str) -> str:
    if lang == "sh":
        return "launcher" if "lmix.integrations.timm" in code else "install"
    for needle, name in (
        ("import lightning", "lightning"),
        ("from accelerate", "accelerate"),
        ("from lmix.integrations.timm import", "timm-classes"),
        ("from lmix.transforms import", "torchvision"),
    ):
        if needle in code:
            return name
    raise AssertionError(f"an example no test knows how to check:\n{code}")


def examples() -> list:
    params = []
    for source, text in (("docs", (ROOT / "docs" / "integrations.md").read_text()), ("README", readme_section())):
        blocks = [(lang, code) for lang, code in code_blocks(text)]
        kinds = [kind(lang, code) for lang, code in blocks]
        # Both pages show every stack.
        assert {"launcher", "timm-classes", "torchvision", "lightning", "accelerate"} <= set(kinds), (source, kinds)
        params += [pytest.param(k, code, id=f"{source}-{k}") for k, (lang, code) in zip(kinds, blocks)]
    return params


@pytest.fixture
def workdir(monkeypatch, tmp_path):
    """Run in tmp_path (the examples write checkpoints), and undo the launcher's patching of timm."""
    for module in (timm.data, timm.data.mixup):  # the launcher replaces timm's classes: restore them
        for name in ("Mixup", "FastCollateMixup"):
            monkeypatch.setattr(module, name, getattr(module, name))
    for module in (timm.data, timm.data.loader):  # and timm's create_loader
        monkeypatch.setattr(module, "create_loader", module.create_loader)
    monkeypatch.chdir(tmp_path)


# -- the checks ------------------------------------------------------------------------------


def check_launcher(code: str, tmp_path: Path, capsys) -> None:
    argv = shlex.split(code.strip())
    assert argv[:3] == ["python", "-m", "lmix.integrations.timm"]
    argv = argv[3:]
    script = argv[argv.index("--") + 1]
    shutil.copy(SCRIPT, tmp_path / script)  # a small stand-in for timm's train.py
    # The command as written, then what keeps it small: a tiny model, one epoch, 8 images.
    record = tmp_path / "record.json"
    overrides = ["--model", "test_resnet", "--epochs", "1", "--samples", "8", "--record", str(record)]
    assert lt.main(argv + overrides) == 0
    err = capsys.readouterr().err
    assert "lmix: timm.data.FastCollateMixup -> MixChoice([NoMix(), LMix(alpha=1.0, decay=3.0, k=1.0," in err
    assert "p=[0.2, 0.8]" in err and "label_smoothing=0.1" in err
    steps = json.loads(record.read_text())["steps"]
    assert len(steps) == 1 and torch.tensor(steps[0]["targets"]).shape == (8, 10)


def check_namespace(name: str, ns: dict) -> None:
    if name == "timm-classes":
        assert isinstance(ns["collate"], timm.data.FastCollateMixup)
        if ns["collate"].mix_on == "device":  # the workers collated plainly, the loader mixed
            assert isinstance(ns["loader"], lt.DeviceMixLoader)
        assert ns["images"].shape == (16, 3, 32, 32) and ns["targets"].shape == (16, 10)
        assert (ns["targets"].max(1).values < 0.9).any()
        if "loss" in ns:
            assert torch.isfinite(ns["loss"])
    elif name == "torchvision":
        assert ns["images"].shape == (16, 3, 32, 32) and ns["targets"].shape == (16, 10)
        torch.testing.assert_close(ns["targets"].sum(1), torch.ones(16))
        if "loss" in ns:
            assert torch.isfinite(ns["loss"])
    elif name == "lightning":
        check_lightning(ns)
    elif name == "accelerate":
        check_accelerate(ns)


def check_lightning(ns: dict) -> None:
    import lightning as L

    if "trainer" in ns:  # the longer example fits its module: the checkpoint holds the mixer's state
        trainer = ns["trainer"]
        assert trainer.current_epoch == 2 and trainer.global_step == 8
        (checkpoint,) = Path().rglob("*.ckpt")
        assert "mixer._extra_state" in torch.load(checkpoint, weights_only=True)["state_dict"]
        fresh = ns["LitClassifier"].load_from_checkpoint(checkpoint, model=ns["model"])
        device = trainer.lightning_module.device  # the mixer's stream there was saved
        images, labels = torch.rand(4, 3, 32, 32, device=device), torch.arange(4, device=device)
        expected = trainer.lightning_module.mixer(images, labels)
        assert torch.equal(fresh.mixer(images, labels).images, expected.images)

    class Checked(ns["LitClassifier"]):
        """The example's module, noting what training and validation steps are given."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__(model)
            self.trained: list = []
            self.validated: list = []

        def training_step(self, batch, batch_idx):
            self.trained.append(batch)
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            self.validated.append(batch)

    data = torch.utils.data.TensorDataset(torch.rand(8, 3, 8, 8), torch.arange(8) % 4)
    lit = Checked(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)))
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    trainer.fit(lit, loader, loader)
    assert len(lit.trained) == len(lit.validated) == 2
    assert all(isinstance(b, lmix.MixedBatch) for b in lit.trained)
    assert not torch.equal(lit.trained[0].images, data.tensors[0][:4])
    # Validation sees the images as they are.
    for i, (images, labels) in enumerate(lit.validated):
        assert torch.equal(images, data.tensors[0][4 * i : 4 * i + 4])
        assert torch.equal(labels, data.tensors[1][4 * i : 4 * i + 4])
    assert "mixer._extra_state" in lit.state_dict()


def check_accelerate(ns: dict) -> None:
    from accelerate import Accelerator

    mixer, accelerator = ns["mixer"], ns["accelerator"]
    if "loss" in ns:  # the longer example trains and saves its state
        assert torch.isfinite(ns["loss"])
        folder = Path("checkpoints/last")
    else:
        folder = Path("resume-test")
        accelerator.save_state(folder)
    assert (folder / "custom_checkpoint_0.pkl").exists()
    images, labels = torch.rand(4, 3, 8, 8).to(accelerator.device), torch.arange(4).to(accelerator.device)
    expected = mixer(images, labels)
    fresh = Accelerator()
    restored = lmix.create_mixer("lmix", seed=123)
    fresh.register_for_checkpointing(restored)
    fresh.load_state(folder)
    assert torch.equal(restored(images, labels).images, expected.images)


@pytest.mark.parametrize("name, code", examples())
def test_example_runs(workdir, tmp_path, capsys, name, code):
    if name == "install":
        extra = re.fullmatch(r'pip install -e "\.\[(\w+)\]"', code.strip())  # from the clone
        assert extra, code
        assert re.search(rf"^{extra[1]} = \[", (ROOT / "pyproject.toml").read_text(), flags=re.M), code
        return
    if name == "launcher":
        check_launcher(code, tmp_path, capsys)
        return
    if name in ("lightning", "accelerate"):
        pytest.importorskip(name)
    ns: dict = {"__name__": "example"}
    exec(compile(code, f"<{name} example>", "exec"), ns)
    check_namespace(name, ns)


def test_readme_sequences_and_volumes_example_runs():
    """The README's (B, C, L) / (B, C, D, H, W) block runs as written, and gives what its comments say."""
    blocks = [code for lang, code in code_blocks(readme_section(LOOP_SECTION)) if "(B, C, L)" in code]
    assert len(blocks) == 1, "the README's training-loop section has one sequences-and-volumes example"
    ns: dict = {"__name__": "example"}
    exec(compile(blocks[0], "<README sequences and volumes example>", "exec"), ns)
    assert torch.isfinite(ns["loss"]) and ns["loss"].requires_grad
    ns["loss"].backward()  # trains: the gradient reaches the model
    assert all(p.grad is not None for p in ns["model"].parameters())
    mixed = lmix.create_mixer("lmix", seed=0)(ns["signals"], ns["labels"])  # the sequence batch, again
    mask = mixed.params.mask
    assert mask.shape == (8, 1, 1000) and torch.equal(mixed.lam, mask.float().mean(dim=(1, 2)))
    assert torch.equal(mixed.images, torch.where(mask, ns["signals"], ns["signals"][mixed.params.perm]))
    batch, masks = ns["batch"], ns["masks"]
    assert batch.images.shape == (4, 1, 16, 32, 32) and batch.params.mask.shape == (4, 1, 16, 32, 32)
    assert torch.equal(batch.lam, batch.params.mask.float().mean(dim=(1, 2, 3, 4)))  # the cuboid's kept share
    assert masks.shape == (4, 1, 16, 32, 32)
    assert masks.flatten(1).sum(1).tolist() == [16 * 32 * 32 / 2] * 4  # exactly lam of the voxels
