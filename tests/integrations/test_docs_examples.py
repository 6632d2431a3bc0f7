"""Every code block of docs/integrations.md and of the README's integrations section runs.

The Lightning and accelerate blocks run against minimal stand-ins of ``lightning.LightningModule``
and ``accelerate.Accelerator`` (neither package is a test dependency) that implement the calls
the examples make the way the packages document them; the checks after each block then drive the
example's code (the Lightning hooks, accelerate's save/load of registered objects).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("timm")
import timm.data  # noqa: E402
import timm.data.mixup  # noqa: E402

import lmix  # noqa: E402
from lmix.integrations import timm as lt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("timm_train_script.py")
README_SECTION = "## Use it with timm / torchvision / Lightning / accelerate"


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block."""
    return [(lang, code) for lang, code in re.findall(r"^```(\w+)\n(.*?)^```", text, flags=re.M | re.S)]


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(README_SECTION)
    end = text.index("\n## ", start + len(README_SECTION))
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


# -- stand-ins for the packages that are not test dependencies ---------------------------------------


class _LightningModule(torch.nn.Module):
    """What the example uses of ``lightning.LightningModule``: an ``nn.Module`` with a ``trainer``
    (set by Lightning's Trainer; here by the test) and a ``global_rank``."""

    global_rank = 0
    trainer: object = None


class _Accelerator:
    """What the example uses of ``accelerate.Accelerator`` on one process.

    ``register_for_checkpointing`` refuses objects without ``state_dict`` and ``load_state_dict``
    as accelerate does; ``save_state``/``load_state`` save and restore every registered object's
    state as ``custom_checkpoint_<i>.pkl`` in the folder, as accelerate does.
    """

    process_index = 0
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.registered: list = []

    def register_for_checkpointing(self, *objects) -> None:
        for obj in objects:
            if not (callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))):
                raise ValueError(f"{obj!r} has no state_dict and load_state_dict: cannot be checkpointed")
        self.registered.extend(objects)

    def prepare(self, *args):
        return args if len(args) > 1 else args[0]

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def save_state(self, folder: str) -> None:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        for i, obj in enumerate(self.registered):
            torch.save(obj.state_dict(), path / f"custom_checkpoint_{i}.pkl")

    def load_state(self, folder: str) -> None:
        for i, obj in enumerate(self.registered):
            obj.load_state_dict(torch.load(Path(folder) / f"custom_checkpoint_{i}.pkl", weights_only=False))


@pytest.fixture
def stand_ins(monkeypatch, tmp_path):
    lightning = types.ModuleType("lightning")
    lightning.LightningModule = _LightningModule
    accelerate = types.ModuleType("accelerate")
    accelerate.Accelerator = _Accelerator
    monkeypatch.setitem(sys.modules, "lightning", lightning)
    monkeypatch.setitem(sys.modules, "accelerate", accelerate)
    for module in (timm.data, timm.data.mixup):  # the launcher replaces timm's classes: restore them
        for name in ("Mixup", "FastCollateMixup"):
            monkeypatch.setattr(module, name, getattr(module, name))
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
        lit = ns["LitClassifier"](torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)))
        images, labels = torch.rand(5, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0])
        lit.trainer = SimpleNamespace(training=True)
        batch = lit.on_after_batch_transfer((images, labels), 0)
        assert isinstance(batch, lmix.MixedBatch) and not torch.equal(batch.images, images)
        loss = lit.training_step(batch, 0)
        assert loss.ndim == 0 and loss.requires_grad
        lit.trainer = SimpleNamespace(training=False)  # validation: the batch passes through
        assert lit.on_after_batch_transfer((images, labels), 0)[0] is images
        if hasattr(lit, "on_save_checkpoint"):
            checkpoint: dict = {}
            lit.on_save_checkpoint(checkpoint)
            expected = lit.mixer(images, labels).lam
            lit.on_load_checkpoint(checkpoint)
            torch.testing.assert_close(lit.mixer(images, labels).lam, expected)
    elif name == "accelerate":
        mixer, accelerator = ns["mixer"], ns["accelerator"]
        assert mixer in accelerator.registered
        accelerator.save_state("resume-test")
        images, labels = torch.rand(4, 3, 8, 8), torch.arange(4)
        expected = mixer(images, labels)
        fresh = _Accelerator()
        restored = lmix.create_mixer("lmix", seed=123)
        fresh.register_for_checkpointing(restored)
        fresh.load_state("resume-test")
        assert torch.equal(restored(images, labels).images, expected.images)
        if "loss" in ns:
            assert torch.isfinite(ns["loss"])
            assert (Path("checkpoints/last") / "custom_checkpoint_0.pkl").exists()


@pytest.mark.parametrize("name, code", examples())
def test_example_runs(stand_ins, tmp_path, capsys, name, code):
    if name == "install":
        assert code.strip() == 'pip install "lmix[timm]"'
        return
    if name == "launcher":
        check_launcher(code, tmp_path, capsys)
        return
    ns: dict = {"__name__": "example"}
    exec(compile(code, f"<{name} example>", "exec"), ns)
    check_namespace(name, ns)
