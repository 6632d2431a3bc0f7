"""Packaging: the core imports with torch alone, the CLI names the extra it misses, one version,
and every install line in the README, the docs and the code's messages is one that works.

The "torch alone" checks run in a subprocess whose ``sys.modules`` refuses the harness's
dependencies (as if ``pip install -e .`` without extras), so they hold whatever this environment
has installed.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

import pytest

import lmix
from lmix._extras import MissingExtraModuleError, install_hint
from lmix.errors import LmixError

ROOT = Path(__file__).resolve().parents[1]

# What the `train` extra brings (top-level module names). The core must import none of them.
HARNESS_MODULES = ("torchvision", "numpy", "matplotlib", "yaml", "tqdm", "sklearn", "scipy", "PIL")

_BLOCKER = """
import sys, warnings
BLOCKED = set({blocked!r})
# None in sys.modules: `import X` raises ModuleNotFoundError and importlib.util.find_spec(X) is
# None, exactly as when X is not installed.
for _name in BLOCKED:
    sys.modules[_name] = None
# torch's own notice that numpy is absent (it warns once at import on a torch-only install)
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
"""


def _run_blocked(blocked: tuple[str, ...], body: str) -> dict:
    """Run ``body`` in a fresh interpreter where ``blocked`` cannot be imported; return the JSON it prints last."""
    script = _BLOCKER.format(blocked=tuple(blocked)) + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_core_needs_torch_alone():
    result = _run_blocked(
        HARNESS_MODULES,
        """
        import json, sys
        import lmix
        lazy = "torch" not in sys.modules  # `import lmix` alone loads nothing heavy
        import torch
        import lmix.augment, lmix.mixing, lmix.models

        g = torch.Generator().manual_seed(0)
        images, labels = torch.rand(6, 3, 16, 16, generator=g), torch.arange(6) % 3
        small = lmix.create_model("simple_cnn", num_classes=3)
        mixed = {}
        for name in lmix.list_mixers():
            mixer = lmix.create_mixer(name, seed=0)
            if mixer.uses_model:  # hidden-layer mixing: the mixer runs the model itself
                _, loss, batch = mixer.forward_loss(small, images, labels)
            else:
                batch = mixer(images, labels)
                loss = lmix.mixed_cross_entropy(small(batch.images), batch)
            assert batch.images.shape == images.shape and torch.isfinite(loss), name
            mixed[name] = float(batch.lam.mean())
        models = {}
        for name in lmix.list_models():
            net = lmix.create_model(name, num_classes=3)
            models[name] = sum(p.numel() for p in net.parameters())
        tiny = lmix.create_model("preact_resnet_tiny", num_classes=3)
        assert tiny(lmix.augment.normalize(images, (0.5,) * 3, (0.25,) * 3)).shape == (6, 3)
        loaded = sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in BLOCKED)
        print(json.dumps({"mixers": mixed, "models": models, "loaded": loaded, "lazy": lazy,
                          "experiments": "lmix.experiments" in sys.modules, "version": lmix.__version__}))
        """,
    )
    assert result["loaded"] == []
    assert result["lazy"] is True
    assert result["experiments"] is False  # `import lmix` does not load the harness
    assert result["version"] == lmix.__version__
    assert set(result["mixers"]) == set(lmix.list_mixers()) and len(result["mixers"]) >= 6
    assert set(result["models"]) == set(lmix.list_models())
    assert all(n > 0 for n in result["models"].values())


def test_transforms_and_integrations_need_no_harness():
    modules = [m for m in ("lmix.transforms", "lmix.integrations.timm") if find_spec(m) is not None]
    assert "lmix.transforms" in modules
    # torchvision (with its numpy and pillow) is the v2 transforms' own dependency, timm the integration's.
    harness_only = ("matplotlib", "yaml", "tqdm", "sklearn", "scipy")
    imports = "; ".join(f"import {m}" for m in modules)
    result = _run_blocked(
        harness_only,
        f"""
        import json, sys
        {imports}
        print(json.dumps({{"loaded": sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in BLOCKED),
                          "experiments": "lmix.experiments.train" in sys.modules}}))
        """,
    )
    assert result == {"loaded": [], "experiments": False}


def test_cli_names_the_missing_extra_in_one_line():
    result = _run_blocked(
        HARNESS_MODULES,
        """
        import contextlib, io, json
        from lmix.experiments.cli import main

        out = {}
        for argv in (["train", "--epochs", "1"], ["compare"], ["sweep", "table1", "--dry-run"], ["show"],
                     ["report", "runs"], ["attack", "--run", "x"], ["--version"], ["methods"], ["configs"],
                     ["--help"]):
            stdout, stderr = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    code = main(argv)
                except SystemExit as exit:  # --version, --help
                    code = exit.code
            out[" ".join(argv)] = [code, stdout.getvalue(), stderr.getvalue()]
        print(json.dumps(out))
        """,
    )
    for command in ("train --epochs 1", "compare", "sweep table1 --dry-run", "show", "report runs", "attack --run x"):
        code, _, err = result[command]
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, (command, err)
        assert lines[0].startswith(f"lmix: error: lmix {command.split()[0]} needs the 'train' extra"), lines[0]
        assert lines[0].endswith(install_hint("train")), lines[0]
    # What a core install can do without the extra.
    assert result["--version"][:2] == [0, f"lmix {lmix.__version__}\n"]
    assert result["methods"][0] == 0 and "lmix" in result["methods"][1]
    assert result["configs"][0] == 0 and "table1_cifar10_preact_resnet18" in result["configs"][1]
    code, help_text, _ = result["--help"]
    assert code == 0 and install_hint("train") in " ".join(help_text.split())


def test_missing_extra_at_run_time_is_one_line(capsys, monkeypatch):
    """A command that imports an extra's package only while running gets the same one line."""
    from lmix.experiments.cli import main
    from lmix.experiments.commands import methods

    def run(args):
        raise ModuleNotFoundError("No module named 'timm'", name="timm")

    monkeypatch.setattr(methods, "run", run)
    code = main(["methods"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        "lmix: error: lmix methods needs the 'timm' extra (no module named 'timm'): "
        "pip install -e '.[timm]' in a clone of lmix\n"
    )


def test_unrelated_module_not_found_is_not_hidden(monkeypatch):
    from lmix.experiments.cli import main
    from lmix.experiments.commands import methods

    def run(args):
        raise ModuleNotFoundError("No module named 'lmix.nowhere'", name="lmix.nowhere")

    monkeypatch.setattr(methods, "run", run)
    with pytest.raises(ModuleNotFoundError, match="lmix.nowhere"):
        main(["methods"])


def test_version_lives_in_one_place():
    text = (ROOT / "pyproject.toml").read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert re.search(r"^version\s*=", project, re.M) is None, "pyproject must not repeat the version"
    assert re.search(r'^dynamic\s*=\s*\[[^]]*"version"', project, re.M)
    assert 'version = { attr = "lmix.__version__" }' in text
    assert metadata.version("lmix") == lmix.__version__, "stale install: pip install -e ."


def test_public_names():
    assert set(lmix.__all__) == {*lmix._EXPORTS, "__version__"}
    for name in lmix._EXPORTS:
        assert getattr(lmix, name) is getattr(sys.modules[lmix._EXPORTS[name]], name)
    assert lmix.mixing is sys.modules["lmix.mixing"]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        lmix.nothing  # noqa: B018


def test_core_dependencies_are_torch_alone():
    requires = metadata.requires("lmix") or []
    core = [r for r in requires if "extra ==" not in r]
    assert [re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0] for r in core] == ["torch"]
    extras = set(metadata.metadata("lmix").get_all("Provides-Extra") or [])
    assert {"train", "timm", "docs", "bench", "dev"} <= extras


def test_import_leaves_the_import_system_alone():
    """``import lmix`` installs no import hook and imports nothing heavy (not even torch)."""
    code = (
        "import sys; before = list(sys.meta_path); import lmix; "
        "assert sys.meta_path == before, sys.meta_path; assert 'torch' not in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("missing", ["PIL", "torchvision"])
def test_transforms_without_the_train_extra_name_it(monkeypatch, missing):
    """``import lmix.transforms`` without torchvision or Pillow says which extra to install."""
    monkeypatch.setitem(sys.modules, missing, None)  # None: `import missing` fails as if not installed
    monkeypatch.delitem(sys.modules, "lmix.transforms", raising=False)
    with pytest.raises(ModuleNotFoundError) as caught:
        importlib.import_module("lmix.transforms")
    assert isinstance(caught.value, MissingExtraModuleError) and isinstance(caught.value, LmixError)
    assert caught.value.name.split(".")[0] == missing
    assert str(caught.value) == (
        f"lmix.transforms needs the 'train' extra (no module named {caught.value.name!r}): "
        "pip install -e '.[train]' in a clone of lmix"
    )


# -- install lines ---------------------------------------------------------------------------

# Packages an install line may take from an index other than lmix's own clone: the dependencies
# pyproject.toml names (torch and the extras' packages). lmix itself is on no index.
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_TORCH_LINE = f"pip install torch torchvision --index-url {CPU_INDEX}"
_OPTIONS_WITH_VALUE = {"--index-url", "--extra-index-url"}
_FLAGS = {"-e", "--editable", "-q", "--quiet", "-U", "--upgrade"}
_TOKEN = re.compile(r"""\s*('[^'\s]*'|"[^"\s]*"|[^\s'"`)\[\]]+(?:\[[^\]\s]*\])?)""")


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirement_names() -> set[str]:
    project = _pyproject()["project"]
    specs = [*project["dependencies"], *(r for reqs in project["optional-dependencies"].values() for r in reqs)]
    return {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower() for r in specs} - {"lmix"}


def install_lines() -> list[tuple[str, str]]:
    """(where, the command) of every ``pip install`` in README.md, docs/**/*.md, src/ and benchmarks/."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    files += sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
    found = []
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in re.finditer(r"pip3? install\b", line):
                found.append((f"{path.relative_to(ROOT)}:{number}", line[match.start() :]))
    return found


def parse_install(command: str) -> tuple[list[str], dict[str, str]]:
    """The targets and the options with values of a ``pip install ...`` text, up to where prose starts.

    The command ends at a backtick, a closing bracket or quote of the text around it, or the first
    word that is neither an option nor something pip installs (a path, a quoted spec, a package).
    """
    rest = command.split("install", 1)[1]
    targets: list[str] = []
    options: dict[str, str] = {}
    pending = None
    known = _requirement_names() | {"lmix"}
    while (match := _TOKEN.match(rest)) is not None:
        token, rest = match[1], rest[match.end() :]
        if pending is not None:
            options[pending], pending = token, None
        elif token in _OPTIONS_WITH_VALUE:
            pending = token
        elif token in _FLAGS:
            continue
        else:
            bare = token.strip("'\"")
            name = re.split(r"[\[<>=!~]", bare, maxsplit=1)[0].lower()
            if bare.startswith((".", "/", "$")) or "[" in bare or name in known:
                targets.append(bare)
            else:
                break  # prose: "... in a clone of lmix"
    return targets, options


def test_parse_install():
    assert parse_install("pip install -e '.[train]' in a clone of lmix") == ([".[train]"], {})
    assert parse_install('pip install -e ".[dev]"`') == ([".[dev]"], {})
    assert parse_install("pip install -e '.[bench]'): timm rows") == ([".[bench]"], {})
    assert parse_install(f"pip install torch torchvision --index-url {CPU_INDEX}  # CPU") == (
        ["torch", "torchvision"],
        {"--index-url": CPU_INDEX},
    )
    assert parse_install('pip install "lmix[timm]"') == (["lmix[timm]"], {})
    assert parse_install("pip install lmix`") == (["lmix"], {})
    assert parse_install("pip install -e .[timm,docs] && lmix") == ([".[timm,docs]"], {})


@pytest.mark.parametrize(("where", "command"), install_lines())
def test_every_install_line_works_from_a_clone(where, command):
    """An install line installs the clone (``.`` with extras pyproject.toml has) or packages an index has.

    Never ``lmix`` by name: it is on no package index. Packages by name are pyproject's own
    requirements (torch, torchvision, timm, ...), and the only other index is PyTorch's CPU one.
    """
    targets, options = parse_install(command)
    assert targets, f"{where}: no package or path in {command!r}"
    extras = set(_pyproject()["project"]["optional-dependencies"])
    for target in targets:
        name = re.split(r"[\[<>=!~]", target, maxsplit=1)[0]
        assert name.lower() != "lmix", f"{where}: {command!r}: lmix is on no package index; use pip install -e ."
        if name == "." or name.startswith(("./", "/", "$")):
            asked = re.fullmatch(r"[^\[]*(?:\[([^\]]*)\])?", target)[1]
            for extra in filter(None, (asked or "").split(",")):
                if extra != "{extra}":  # install_hint's template: checked for every extra below
                    assert extra in extras, f"{where}: {command!r}: no extra {extra!r} in pyproject.toml"
        else:
            assert name.lower() in _requirement_names(), f"{where}: {command!r}: {name!r} is no requirement of lmix"
    assert set(options) <= {"--index-url"} and options.get("--index-url", CPU_INDEX) == CPU_INDEX, (where, command)
    if options:  # PyTorch's CPU index: torch with its torchvision, as the quick starts say
        assert (targets, options) == (["torch", "torchvision"], {"--index-url": CPU_INDEX}), (where, command)


def test_install_hint_names_every_extra():
    for extra in _pyproject()["project"]["optional-dependencies"]:
        (target,) = parse_install(install_hint(extra))[0]
        assert target == f".[{extra}]"


def test_cpu_torch_line_comes_first_in_both_quick_starts():
    """README's and getting-started's quick start: the same CPU-only torch line, just before lmix's install."""
    for page in (ROOT / "README.md", ROOT / "docs" / "getting-started.md"):
        block = re.search(r"```sh\n(python3 -m venv .*?)```", page.read_text(), flags=re.S)[1].splitlines()
        assert block[1:3] == [CPU_TORCH_LINE, 'pip install -e ".[train]"'], (page.name, block)
    torch_deps = [r for r in _pyproject()["project"]["dependencies"] if r.startswith("torch")]
    assert torch_deps == ["torch>=2.3"]  # the CPU index serves torch >= 2.3 for Python 3.10 and newer


def test_readme_test_commands_are_what_ci_runs():
    """README's "Run the tests" block is .ci/run's install and test commands, as they are."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Run the tests\n\n```sh\n(.*?)```", readme, flags=re.S)[1].splitlines()
    ci = (ROOT / ".ci" / "run").read_text()
    synced = re.search(r"# --- README: \"Run the tests\" \(keep in sync\) ---\n(.*?)# --- end", ci, flags=re.S)
    assert block[1:] == synced[1].splitlines(), (block, synced[1])
